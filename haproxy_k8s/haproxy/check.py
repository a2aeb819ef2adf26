"""Run `haproxy -c` on a candidate config, the way the service runs HAProxy."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ValidationError

_ALERT = re.compile(r"^\[(ALERT|WARNING)\]\s*(?:\(\d+\)\s*)?:\s*(.*)$")
# HAProxy names the file and line as `[path:line]`; we point at the template
# line's config line and quote it, since the operator never edits that file.
_FILE_LINE = re.compile(r"\[([^\]\s]+):(\d+)\]")


@dataclass(frozen=True)
class CheckResult:
    alerts: list[str]
    warnings: list[str]


def _classify(output: str) -> CheckResult:
    alerts: list[str] = []
    warnings: list[str] = []
    for line in output.splitlines():
        match = _ALERT.match(line.strip())
        if not match:
            continue
        (alerts if match.group(1) == "ALERT" else warnings).append(match.group(2))
    return CheckResult(alerts, warnings)


def _quote_lines(alert: str, text: str) -> str:
    """Append the offending config line to an alert that names `[file:line]`."""
    match = _FILE_LINE.search(alert)
    lines = text.splitlines()
    if not match or not match.group(2).isdigit():
        return alert
    number = int(match.group(2))
    if 1 <= number <= len(lines):
        return f"{alert} (line {number}: {lines[number - 1].strip()!r})"
    return alert


def check_config(binary: str, path: Path, *, env: Mapping[str, str] | None = None,
                 timeout: float = 30.0, also: Sequence[Path] = (),
                 started: Callable[[], None] | None = None) -> CheckResult:
    """Validate `path` (and the files in `also`, read after it, as the master reads
    them) with `haproxy -c -W`; raise ValidationError when refused.

    `started` runs once HAProxy is spawned, while it checks: work started
    before would share the GIL with the spawn and hold it back."""
    cmd = [binary, "-c", "-W", "-f", str(path)]
    for extra in also:
        cmd += ["-f", str(extra)]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(env) if env is not None else None)
    except FileNotFoundError as e:
        raise ValidationError(f"haproxy binary not found: {binary}") from e
    if started is not None:
        started()
    try:
        stdout, stderr, valid = _read_verdict(proc, time.monotonic() + timeout)
    except subprocess.TimeoutExpired as e:
        proc.kill()
        proc.communicate()
        raise ValidationError(f"`haproxy -c` did not finish within {timeout:g}s") from e
    # Past its verdict HAProxy only frees what it parsed (7-13 ms at 1,000
    # clusters) and exits 0: that is reaped aside, off the reload's path.
    returncode = 0 if valid else proc.wait()
    if valid:
        threading.Thread(target=proc.communicate, name="haproxy -c exit", daemon=True).start()
    result = _classify(stdout + stderr)
    if returncode != 0:
        text = path.read_text(errors="replace") if path.exists() else ""
        alerts = [_quote_lines(a, text) for a in result.alerts] or [
            (stderr or stdout).strip() or f"exit code {returncode}"]
        raise ValidationError("haproxy -c refused the rendered config: " + "; ".join(alerts),
                              alerts=alerts)
    return result


# `haproxy -c` prints this last, once every check has passed (haproxy.c, init()),
# then frees everything and exits 0.
_VALID = b"Configuration file is valid\n"


def _read_verdict(proc: subprocess.Popen[bytes], deadline: float) -> tuple[str, str, bool]:
    """HAProxy's stdout and stderr up to its verdict, and whether it said valid.

    Both pipes are read as they fill, so a long list of warnings never blocks
    HAProxy. Everything it wrote before the verdict is in the pipes by then:
    what stderr still holds is read without waiting."""
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    with selectors.DefaultSelector() as sel:
        for fd in chunks:
            sel.register(fd, selectors.EVENT_READ)
        valid = False
        while sel.get_map() and not valid:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, 0)
            for key, _ in sel.select(left):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fd)
                    continue
                chunks[key.fd].append(data)
                valid = valid or (key.fd == out_fd and b"".join(chunks[out_fd]).endswith(_VALID))
    if valid:
        _drain(err_fd, chunks[err_fd])
    out, err = (b"".join(chunks[fd]).decode(errors="replace") for fd in (out_fd, err_fd))
    return out, err, valid


def _drain(fd: int, into: list[bytes]) -> None:
    """Append what the pipe `fd` holds now, without waiting for more."""
    os.set_blocking(fd, False)
    try:
        while data := os.read(fd, 65536):
            into.append(data)
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(fd, True)


def haproxy_version(binary: str, timeout: float = 10.0) -> tuple[str, bool]:
    """HAProxy's version string, and whether it has the Prometheus exporter."""
    try:
        out = subprocess.run([binary, "-vv"], capture_output=True, text=True,
                             timeout=timeout, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ValidationError(f"cannot run {binary} -vv: {e}") from e
    match = re.search(r"version\s+(\S+)", out)
    version = match.group(1) if match else "unknown"
    promex = "+PROMEX" in out or "Prometheus exporter" in out
    return version, promex

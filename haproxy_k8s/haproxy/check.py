"""Run `haproxy -c` on a candidate config, the way the service runs HAProxy."""

from __future__ import annotations

import re
import subprocess
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
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(env) if env is not None else None) as proc:
            if started is not None:
                started()
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired as e:
                proc.kill()
                proc.communicate()
                raise ValidationError(
                    f"`haproxy -c` did not finish within {timeout:g}s") from e
    except FileNotFoundError as e:
        raise ValidationError(f"haproxy binary not found: {binary}") from e
    result = _classify(stdout + stderr)
    if proc.returncode != 0:
        text = path.read_text(errors="replace") if path.exists() else ""
        alerts = [_quote_lines(a, text) for a in result.alerts] or [
            (stderr or stdout).strip() or f"exit code {proc.returncode}"]
        raise ValidationError("haproxy -c refused the rendered config: " + "; ".join(alerts),
                              alerts=alerts)
    return result


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

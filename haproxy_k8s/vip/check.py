"""`keepalived --config-test` on a candidate, like `haproxy -c` for haproxy.cfg."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ..errors import ValidationError

# What keepalived says when it cannot open a netlink socket (haproxy-k8s.service allows
# none), and the verdicts that follow from it: every interface looks missing.
_NO_NETLINK = re.compile(r"registering Kernel netlink|netlink_address_lookup")
_NO_SUCH_INTERFACE = re.compile(r"interface \S+ .*doesn't exist|^Non-existent interface "
                                r"specified in configuration$")


def deferred_to_unit(lines: list[str]) -> bool:
    """True when keepalived refused only because it could not see interfaces here.

    Without netlink it cannot tell an interface that exists from one that does not; the
    keepalived unit, which has netlink, runs the full test before it uses the file
    (vip/unitside.py). Anything else (a syntax error, a bad address) still counts.
    """
    if not any(_NO_NETLINK.search(line) for line in lines):
        return False
    return all(_NO_NETLINK.search(line) or _NO_SUCH_INTERFACE.search(line) for line in lines)


def check_keepalived(binary: str, path: Path, timeout: float = 15.0) -> None:
    """Raise ValidationError with keepalived's complaints when it refuses `path`.

    keepalived checks in the current network namespace, so an interface that
    does not exist here is refused as well, unless netlink is not available here
    at all (see `deferred_to_unit`).
    """
    cmd = [binary, f"--config-test={path.with_suffix('.test-log')}", "-f", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise ValidationError(f"keepalived binary not found: {binary}") from e
    except subprocess.TimeoutExpired as e:
        raise ValidationError(f"keepalived --config-test did not finish in {timeout:g}s") from e
    log_file = path.with_suffix(".test-log")
    try:
        lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines()
                 if line.strip()]
    except OSError:
        lines = []
    log_file.unlink(missing_ok=True)
    if proc.returncode != 0 and not deferred_to_unit(lines):
        detail = lines or [(proc.stderr or proc.stdout).strip() or f"exit {proc.returncode}"]
        raise ValidationError("keepalived --config-test refused the rendered keepalived.conf: "
                              + "; ".join(detail), alerts=detail)

"""`keepalived --config-test` on a candidate, like `haproxy -c` for haproxy.cfg."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import ValidationError


def check_keepalived(binary: str, path: Path, timeout: float = 15.0) -> None:
    """Raise ValidationError with keepalived's complaints when it refuses `path`.

    keepalived checks in the current network namespace, so an interface that
    does not exist here is refused as well.
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
    if proc.returncode != 0:
        detail = lines or [(proc.stderr or proc.stdout).strip() or f"exit {proc.returncode}"]
        raise ValidationError("keepalived --config-test refused the rendered keepalived.conf: "
                              + "; ".join(detail), alerts=detail)

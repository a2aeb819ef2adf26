"""The keepalived unit's side of `manage = "unit"`: test, install, reload, report.

The daemon runs as `haproxy` without netlink sockets (its unit allows AF_UNIX/INET/INET6
only), so its own `keepalived --config-test` cannot see interfaces: it checks the syntax
and publishes `keepalived.conf` in its state dir. haproxy-k8s-keepalived.service (root,
with netlink) runs `haproxy-k8s keepalived-install` before starting keepalived and as its
reload: the published file is copied into the unit's own runtime dir, tested there with
every interface visible, and only then renamed over the config keepalived runs (and
keepalived sent SIGHUP). A refused config leaves the running one in place; the command
fails, so `systemctl reload` and the journal say so, and the verdict goes into a small
JSON file that the daemon reads and shows in `status`.

The runtime dir is the state dir's sibling, `<state_dir>-keepalived` (by default
/run/haproxy-k8s-keepalived): root-owned, group `haproxy`, so the daemon can read the
verdict and the pid file but not change what keepalived runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ValidationError
from ..fileio import write_atomic
from .check import check_keepalived
from .render import VipPaths

VERDICT = "config-test.json"  # VipPaths.unit_verdict


@dataclass(frozen=True)
class Verdict:
    """The keepalived side's answer about one published keepalived.conf."""

    sha256: str
    ok: bool
    message: str
    at: str = ""

    def to_json(self) -> str:
        return json.dumps({"sha256": self.sha256, "ok": self.ok, "message": self.message,
                           "at": self.at}) + "\n"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def install(published: Path, target_dir: Path, binary: str = "keepalived",
            hup: int | None = None) -> Verdict:
    """Test `published` and, when keepalived accepts it, make it the running config.

    The bytes are read once: what is tested is exactly what is installed, even if the
    daemon publishes again meanwhile (its next publish triggers another run).
    """
    data = published.read_bytes()
    candidate = target_dir / "keepalived.conf.candidate"
    # keepalived skips an executable config file: 0640 like everything else here.
    write_atomic(candidate, data, mode=0o640)
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    try:
        check_keepalived(binary, candidate)
    except ValidationError as e:
        candidate.unlink(missing_ok=True)
        verdict = Verdict(digest(data), False, str(e), now)
    else:
        os.replace(candidate, target_dir / "keepalived.conf")
        if hup is not None:
            os.kill(hup, signal.SIGHUP)
        verdict = Verdict(digest(data), True, "", now)
    write_atomic(target_dir / VERDICT, verdict.to_json(), mode=0o640, durable=False)
    return verdict


def read_verdict(path: Path) -> Verdict | None:
    """The last verdict, or None when there is none (unit not started) or it is unreadable."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        raw = json.loads(path.read_text())
        return Verdict(str(raw["sha256"]), bool(raw["ok"]), str(raw["message"]),
                       str(raw.get("at", "")))
    return None


def read_unit_pid(path: Path) -> int | None:
    """keepalived's pid from the unit's pid file (the daemon cannot see root's /proc
    entries under ProtectProc=invisible: the file is all it has)."""
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().split()[0])
    return None


def main(state_dir: Path, binary: str, hup: int | None) -> int:
    """`haproxy-k8s keepalived-install`: exit 0 installed, 1 refused or unreadable."""
    paths = VipPaths(state_dir)
    published = paths.config
    try:
        verdict = install(published, paths.unit_dir, binary, hup)
    except FileNotFoundError:
        # [vip] was removed: the daemon closed the fit link, so keepalived is in FAULT and
        # holds no address; it is for the operator to stop the unit.
        print(f"haproxy-k8s: {published} is gone ([vip] removed?): keepalived keeps its "
              "config, in FAULT; stop haproxy-k8s-keepalived.service", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"haproxy-k8s: cannot install {published}: {e}", file=sys.stderr)
        return 1
    if not verdict.ok:
        print(f"haproxy-k8s: {published}: {verdict.message}; keepalived keeps its "
              "previous config", file=sys.stderr)
        return 1
    print(f"installed {published} (sha256 {verdict.sha256[:12]})"
          + (f", keepalived {hup} reloaded" if hup is not None else ""))
    return 0

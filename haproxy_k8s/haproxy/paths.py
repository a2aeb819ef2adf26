"""Where the daemon keeps its files inside `haproxy.state_dir`."""

from __future__ import annotations

import functools
import os
from pathlib import Path

STATE_DIR_MODE = 0o750  # as the unit's RuntimeDirectoryMode: the haproxy group may read


class StatePaths:
    """Every file of the state dir. The paths are made once (cached): the daemon
    asks for some of them on every supervision round.

    A plain class, equal by `root`: every CLI command makes one, and importing
    dataclasses for it was a tenth of `status`'s start.
    """

    __slots__ = ("__dict__", "root")  # __dict__: for the cached properties

    def __init__(self, root: Path) -> None:
        self.root = root

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StatePaths) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"StatePaths(root={self.root!r})"

    def ensure_root(self) -> None:
        """Create the state dir private to the service (0750), as systemd would."""
        if not self.root.is_dir():
            self.root.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
            os.chmod(self.root, STATE_DIR_MODE)  # mkdir's mode is filtered by the umask

    @functools.cached_property
    def config(self) -> Path:
        """The published config HAProxy runs: always one that passed `haproxy -c`."""
        return self.root / "haproxy.cfg"

    @functools.cached_property
    def candidate(self) -> Path:
        """A rendered config under validation, next to the live one (same filesystem)."""
        return self.root / "haproxy.cfg.candidate"

    @functools.cached_property
    def deferred(self) -> Path:
        """A runtime change's file under validation beside the loop (apply/deferred.py)."""
        return self.root / "haproxy.cfg.deferred"

    @functools.cached_property
    def last_good(self) -> Path:
        """The config of the last reload HAProxy accepted; the rollback target."""
        return self.root / "haproxy.cfg.good"

    @functools.cached_property
    def stats_auth(self) -> Path:
        """The stats userlist, a second `-f` file: the password stays out of haproxy.cfg."""
        return self.root / "stats-auth.cfg"

    @functools.cached_property
    def admin_socket(self) -> Path:
        return self.root / "admin.sock"

    @functools.cached_property
    def master_socket(self) -> Path:
        return self.root / "master.sock"

    @functools.cached_property
    def output(self) -> Path:
        """HAProxy's stdout and stderr (alerts, notices), for any daemon to read."""
        return self.root / "haproxy.out"

    @functools.cached_property
    def haproxy_pid(self) -> Path:
        return self.root / "haproxy.pid"

    @functools.cached_property
    def daemon_pid(self) -> Path:
        return self.root / "daemon.pid"

    @functools.cached_property
    def server_state(self) -> Path:
        return self.root / "server-state"

    @functools.cached_property
    def server_state_next(self) -> Path:
        """The servers' state dumped for the next reload, moved to server_state for it."""
        return self.root / "server-state.next"

    @functools.cached_property
    def status(self) -> Path:
        return self.root / "status.json"

    @functools.cached_property
    def log_socket(self) -> str:
        """The name of the daemon's datagram socket for HAProxy's log messages
        (daemon/logsink.py), in the abstract namespace (`abns@` to HAProxy).

        Abstract, not a file here: HAProxy's workers send from the user they
        drop to, which cannot enter a state dir private to root; an abstract
        socket has no file permissions. Named after the state dir, so it is
        the same for every reload and every daemon on this state dir.
        """
        import hashlib  # only the daemon asks this

        digest = hashlib.sha256(os.path.abspath(self.root).encode()).hexdigest()[:20]
        return f"haproxy-k8s-{digest}"

    @functools.cached_property
    def control_socket(self) -> Path:
        """The daemon's control socket: CLI verbs ask the daemon through it."""
        return self.root / "control.sock"

    @functools.cached_property
    def operator_state(self) -> Path:
        return self.root / "operator-state.json"


def read_pid(path: Path) -> int | None:
    """The pid in a pid file (HAProxy's, the daemon's); None when there is none."""
    try:
        text = path.read_text().split()
    except OSError:
        return None
    return int(text[0]) if text and text[0].isdigit() else None

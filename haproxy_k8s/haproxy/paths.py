"""Where the daemon keeps its files inside `haproxy.state_dir`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STATE_DIR_MODE = 0o750  # as the unit's RuntimeDirectoryMode


def make_state_dir(root: Path) -> None:
    """Create the state dir (0750, like the unit's) unless it exists; leave an existing one be."""
    if root.is_dir():
        return
    root.mkdir(parents=True, mode=STATE_DIR_MODE, exist_ok=True)
    os.chmod(root, STATE_DIR_MODE)  # mkdir's mode passes through the umask


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @property
    def config(self) -> Path:
        """The published config HAProxy runs: always one that passed `haproxy -c`."""
        return self.root / "haproxy.cfg"

    @property
    def candidate(self) -> Path:
        """A rendered config under validation, next to the live one (same filesystem)."""
        return self.root / "haproxy.cfg.candidate"

    @property
    def last_good(self) -> Path:
        """The config of the last reload HAProxy accepted; the rollback target."""
        return self.root / "haproxy.cfg.good"

    @property
    def stats_auth(self) -> Path:
        """The stats userlist, a second `-f` file: the password stays out of haproxy.cfg."""
        return self.root / "stats-auth.cfg"

    @property
    def admin_socket(self) -> Path:
        return self.root / "admin.sock"

    @property
    def master_socket(self) -> Path:
        return self.root / "master.sock"

    @property
    def haproxy_pid(self) -> Path:
        return self.root / "haproxy.pid"

    @property
    def daemon_pid(self) -> Path:
        return self.root / "daemon.pid"

    @property
    def server_state(self) -> Path:
        return self.root / "server-state"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def operator_state(self) -> Path:
        return self.root / "operator-state.json"

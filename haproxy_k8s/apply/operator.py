"""Operator admin state (drain / maint) that must survive reloads and restarts.

`haproxy-k8s drain|maint|ready` write it; the daemon re-applies it after
every start, reload and runtime add. Kept as a small JSON file in state_dir:
{"cluster-0/m1": "drain"}. A node that is "ready" has no entry.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..config.model import AdminState
from ..fileio import write_atomic

ADMIN_STATES = tuple(AdminState)


def load(path: Path) -> dict[str, AdminState]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): AdminState(v) for k, v in data.items()
            if v in (AdminState.DRAIN, AdminState.MAINT)}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two operators running `drain` at once must not lose one of the entries.
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def set_state(path: Path, server: str, state: AdminState) -> None:
    """Record `state` for `cluster/node` ("ready" removes the entry)."""
    if state not in ADMIN_STATES:
        raise ValueError(f"unknown admin state {state!r}")
    with _locked(path):
        states = load(path)
        if state == AdminState.READY:
            states.pop(server, None)
        else:
            states[server] = state
        write_atomic(path, json.dumps(states, indent=2, sort_keys=True) + "\n", mode=0o640)

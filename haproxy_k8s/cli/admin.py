"""`haproxy-k8s drain|ready|maint CLUSTER/NODE`: operator admin state.

Applied live through the admin socket and recorded in state_dir, so the
daemon puts it back after reloads, HAProxy restarts and its own restarts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..apply import operator as opstate
from ..config.model import AdminState, backend_name, server_id
from ..config.schema import is_valid_name
from ..errors import RuntimeApiError
from ..haproxy.paths import StatePaths
from ..haproxy.runtime import RuntimeClient, RuntimeReplyError


@dataclass(frozen=True)
class Target:
    cluster: str
    node: str

    @property
    def server(self) -> str:
        return server_id(self.cluster, self.node)

    def __str__(self) -> str:
        return f"{self.cluster}/{self.node}"


def parse_target(text: str) -> Target:
    cluster, sep, node = text.partition("/")
    if not sep or not is_valid_name("cluster", cluster) or not is_valid_name("node", node):
        raise ValueError(f"{text!r}: expected CLUSTER/NODE, e.g. cluster-0/k8s-master-1")
    return Target(cluster, node)


def set_admin_state(paths: StatePaths, target: Target, state: AdminState | str) -> None:
    """Set the live state first (fails for an unknown node), then record it."""
    state = AdminState(state)
    try:
        RuntimeClient(paths.admin_socket).set_state(target.server, state)
    except RuntimeReplyError as e:
        raise RuntimeApiError(f"{target}: {e.reply}") from e
    opstate.set_state(paths.operator_state, str(target), state)


def sessions(paths: StatePaths, target: Target) -> int:
    row = RuntimeClient(paths.admin_socket).show_stat().get(
        (backend_name(target.cluster), target.node))
    if row is None:
        raise RuntimeApiError(f"{target}: no such node in the running HAProxy")
    return int(row.get("scur") or 0)


def wait_drained(paths: StatePaths, target: Target, timeout: float) -> int:
    """Poll until the node has no sessions; return the count left at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = sessions(paths, target)
        if left == 0 or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)

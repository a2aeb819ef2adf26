"""`haproxy-k8s drain|ready|maint CLUSTER/NODE`: operator admin state.

Applied live through the admin socket and recorded in state_dir, so the
daemon puts it back after reloads, HAProxy restarts and its own restarts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..apply import operator as opstate
from ..config.schema import is_valid_name
from ..errors import RuntimeApiError
from ..haproxy.paths import StatePaths
from ..haproxy.replies import parse_show_stat
from ..haproxy.sockets import AdminSocket


@dataclass(frozen=True)
class Target:
    cluster: str
    node: str

    @property
    def server(self) -> str:
        return f"be_{self.cluster}/{self.node}"

    def __str__(self) -> str:
        return f"{self.cluster}/{self.node}"


def parse_target(text: str) -> Target:
    cluster, sep, node = text.partition("/")
    if not sep or not is_valid_name("cluster", cluster) or not is_valid_name("node", node):
        raise ValueError(f"{text!r}: expected CLUSTER/NODE, e.g. cluster-0/k8s-master-1")
    return Target(cluster, node)


def set_admin_state(paths: StatePaths, target: Target, state: str) -> None:
    """Set the live state first (fails for an unknown node), then record it."""
    reply = AdminSocket(paths.admin_socket).command(
        f"set server {target.server} state {state}").strip()
    if reply:
        raise RuntimeApiError(f"{target}: {reply}")
    opstate.set_state(paths.operator_state, str(target), state)


def sessions(paths: StatePaths, target: Target) -> int:
    rows = parse_show_stat(AdminSocket(paths.admin_socket).command("show stat"))
    for row in rows:
        if f"{row['pxname']}/{row['svname']}" == target.server:
            return int(row.get("scur") or 0)
    raise RuntimeApiError(f"{target}: no such node in the running HAProxy")


def wait_drained(paths: StatePaths, target: Target, timeout: float) -> int:
    """Poll until the node has no sessions; return the count left at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = sessions(paths, target)
        if left == 0 or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)

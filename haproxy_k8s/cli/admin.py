"""`haproxy-k8s drain|ready|maint CLUSTER/NODE`: operator admin state.

The daemon is the one writer to HAProxy: these verbs ask it through its
control socket, and it sets the state live and records it in the state dir,
so it comes back after reloads, HAProxy restarts and its own restarts.
Waiting for a drain only reads HAProxy's stats.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..config.model import backend_name, server_id
from ..config.schema import is_valid_name
from ..daemon import control
from ..errors import RuntimeApiError
from ..haproxy.paths import StatePaths
from ..haproxy.runtime import RuntimeClient


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


class RefusedError(RuntimeApiError):
    """The daemon answered, and said no (an unknown node, HAProxy refused)."""


def set_admin_state(paths: StatePaths, target: Target, state: str, force: bool = False) -> None:
    """Ask the running daemon to set `state`; raises RuntimeApiError without one.

    `force`: maint even of a cluster's last serving node (the daemon refuses otherwise).
    """
    args: dict[str, object] = {"target": str(target)}
    if force:
        args["force"] = True
    reply = control.call(paths.control_socket, state, args)
    if not reply.get("ok"):
        error = reply.get("error") or {}
        raise RefusedError(str(error.get("message", error)))


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

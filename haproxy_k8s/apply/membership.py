"""Node membership changes through the runtime API, without a reload.

The runtime client checks every reply against its known success text; anything
else is an error, and the caller falls back to a full reload. Removal is gentle and never blocks the
main loop: the server is drained at once and deleted by `tick()` once its
sessions are gone or its grace period ran out.

A new node serves only once its first check passed, and that check comes within
`max-spread-checks` of the add. A node of a `fail_open` cluster has a twin
without checks (in the cluster's backend, or in its fail-open backend: see
Cluster.failopen_backups); every change is made to both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass

from ..config.model import (
    AdminState,
    Cluster,
    Config,
    Node,
    cluster_backends,
    cluster_of_backend,
    is_node_server,
)
from ..errors import RuntimeApiError
from ..haproxy.render import failopen_server_params, failopen_twin_params, server_params
from ..haproxy.replies import ServerKey
from ..haproxy.runtime import AdminApi
from .plan import ChangeKind, NodeChange

log = logging.getLogger(__name__)

# Deleting a server takes four round trips; a tick deletes at most this many,
# so removing thousands of nodes never holds the main loop for long.
DELETES_PER_TICK = 200
# A long batch of changes calls the heartbeat this often (the daemon pings
# systemd's watchdog from it).
HEARTBEAT_EVERY = 50
SESSIONS = frozenset({"scur"})  # the `show stat` column a drained-out removal waits on


@dataclass
class PendingRemoval:
    server: str  # backend/name
    deadline: float
    attempts: int = 0
    cluster: str = ""  # which cluster and node it was, for `status` (DRAIN (removing))
    node: Node | None = None


def _twin_params(cluster: Cluster, node: Node) -> str:
    """`add server` words of a node's fail-open twin, wherever the cluster keeps it."""
    return failopen_twin_params(node) if cluster.failopen_backups \
        else failopen_server_params(node)


class RuntimeOps:
    def __init__(self, admin: AdminApi) -> None:
        self.admin = admin
        self.pending: dict[str, PendingRemoval] = {}
        self.heartbeat: Callable[[], None] = lambda: None

    # -- changes -----------------------------------------------------------
    def apply(self, changes: tuple[NodeChange, ...],
              admin_states: Mapping[str, AdminState]) -> None:
        for i, change in enumerate(changes):
            if i % HEARTBEAT_EVERY == HEARTBEAT_EVERY - 1:
                self.heartbeat()
            log.info("runtime: %s", change.describe())
            if change.kind is ChangeKind.REMOVE:
                self._start_removal(change)
            elif change.kind is ChangeKind.ADD:
                self._add(change, admin_states)
            else:
                self._update(change)

    def _add(self, change: NodeChange, admin_states: Mapping[str, AdminState]) -> None:
        node = change.node
        state = admin_states.get(f"{change.cluster.name}/{node.name}", AdminState.READY)
        for server in (change.server, change.mirror):
            if server is None:
                continue
            if self.pending.pop(server, None) is not None:
                # Re-added while draining out: the server still exists; reuse it.
                self.admin.set_addr(server, node.address, node.port)
                self.admin.set_weight(server, node.weight)
            elif server == change.mirror:
                self.admin.add_server(server, node.haproxy_addr,
                                      _twin_params(change.cluster, node))
            else:
                self._add_unchecked(server, change)
            self.admin.set_state(server, state)

    def _add_unchecked(self, server: str, change: NodeChange) -> None:
        """Add a server that takes no client before its first check passed.

        Leaving maintenance, HAProxy would call it UP before any check. Drained
        meanwhile (no new clients), its health is forced to "stopping" (NOLB:
        no new clients, full health): one good check makes it UP, failed checks
        take it DOWN after `fall`. The caller then sets the admin state.
        """
        params = server_params(change.cluster.settings, change.node)
        self.admin.add_server(server, change.node.haproxy_addr, params)
        self.admin.enable_health(server)
        self.admin.set_state(server, AdminState.DRAIN)
        self.admin.set_health(server, "stopping")

    def _update(self, change: NodeChange) -> None:
        old, node = change.old, change.node
        assert old is not None
        for server in filter(None, (change.server, change.mirror)):
            if (old.address, old.port) != (node.address, node.port):
                self.admin.set_addr(server, node.address, node.port)
                # Sessions to the old address are to the wrong machine now.
                self.admin.shutdown_sessions(server)
            if old.weight != node.weight:
                self.admin.set_weight(server, node.weight)

    def _start_removal(self, change: NodeChange) -> None:
        deadline = time.monotonic() + change.cluster.settings.drain_grace_ms / 1000
        # Deleted by the next tick once drained: one `show stat` for all removals,
        # not one each (that made removing 1,000 nodes take half a minute).
        self.admin.set_state(change.server, AdminState.DRAIN)
        self.pending[change.server] = PendingRemoval(change.server, deadline,
                                                     cluster=change.cluster.name,
                                                     node=change.node)
        if change.mirror is not None:  # the fail-open twin: not listed in `status`
            self.admin.set_state(change.mirror, AdminState.DRAIN)
            self.pending[change.mirror] = PendingRemoval(change.mirror, deadline)

    # -- deferred removal --------------------------------------------------
    def tick(self) -> None:
        """Delete drained-out servers; called from the daemon's main loop."""
        if not self.pending:
            return
        sessions = self._sessions()
        now = time.monotonic()
        deleted = 0
        for server, item in list(self.pending.items()):
            if sessions.get(server, 0) > 0 and now < item.deadline:
                continue
            if deleted >= DELETES_PER_TICK:
                break  # the rest next tick: the loop has signals and status to serve
            deleted += 1
            if deleted % HEARTBEAT_EVERY == 0:
                self.heartbeat()
            try:
                self._delete(server)
            except RuntimeApiError as e:
                item.attempts += 1
                if item.attempts >= 20:
                    log.error("giving up deleting %s (the next reload removes it): %s",
                              server, e)
                    del self.pending[server]
                continue
            del self.pending[server]

    def _delete(self, server: str) -> None:
        self.admin.shutdown_sessions(server)
        self.admin.set_state(server, AdminState.MAINT)
        backend, _, name = server.partition("/")
        if is_node_server(backend, name):
            self.admin.disable_health(server)  # fail-open twins have no checks
        self.admin.del_server(server)
        log.info("runtime: deleted %s", server)

    def _sessions(self) -> dict[str, int]:
        # Servers only, and only their sessions: the whole `show stat` (every
        # proxy, every column) made 30 MiB of rows at 1,000 clusters, on each
        # tick with a removal pending, and the heap kept much of such peaks.
        try:
            rows = self.admin.show_server_stats(None, SESSIONS)
        except RuntimeApiError:
            return {}
        return {f"{backend}/{name}": int(row.get("scur") or 0)
                for (backend, name), row in rows.items()}

    def removals(self) -> list[tuple[str, Node]]:
        """(cluster, node) of every server still draining out, for the status document."""
        return [(item.cluster, item.node) for item in self.pending.values()
                if item.node is not None]

    def forget_pending(self) -> None:
        """A reload replaced every server: pending deletions are moot."""
        self.pending.clear()

    # -- verification ------------------------------------------------------
    def mismatches(self, config: Config, backends: Set[str] | None = None) -> list[str]:
        """Compare HAProxy's servers with `config`; an empty list means they agree.

        `backends`: only these (the ones a runtime change touched), so a
        change to one cluster does not read back thousands of servers.
        """
        live: dict[ServerKey, dict[str, str]] = {}
        if backends is None:
            live.update(self.admin.show_servers_state())
        else:
            touched = {b for c in config.clusters if c.backend in backends
                       for b in cluster_backends(c)}  # the fail-open twins too
            for backend in sorted(touched):
                live.update(self.admin.show_servers_state(backend))
        problems = []
        for cluster in config.clusters:
            if backends is not None and cluster.backend not in backends:
                continue
            for node in cluster.nodes:
                for server in cluster.server_ids(node.name):
                    backend, _, name = server.partition("/")
                    row = live.pop((backend, name), None)
                    want = (node.address, str(node.port), str(node.weight))
                    got = (row.get("srv_addr"), row.get("srv_port"),
                           row.get("srv_uweight")) if row else None
                    if got != want:
                        problems.append(f"{server}: want {want}, have {got}")
        ours = {c.backend for c in config.clusters} | {c.failopen_backend for c in config.clusters}
        extra = [f"{b}/{s}" for b, s in live if (cluster_of_backend(b) is not None or b in ours)
                 and f"{b}/{s}" not in self.pending]
        problems += [f"{server}: not in the config" for server in extra]
        return problems

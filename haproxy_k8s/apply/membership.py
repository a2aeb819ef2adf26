"""Node membership changes through the runtime API, without a reload.

The runtime client checks every reply against its known success text; anything
else is an error, and the caller falls back to a full reload. Removal is gentle and never blocks the
main loop: the server is drained at once and deleted by `tick()` once its
sessions are gone or its grace period ran out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass

from ..config.model import AdminState, Config, cluster_of_backend, server_id
from ..errors import RuntimeApiError
from ..haproxy.render import server_params
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


@dataclass
class PendingRemoval:
    server: str  # backend/name
    deadline: float
    attempts: int = 0


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
        node, server = change.node, change.server
        if self.pending.pop(server, None) is not None:
            # Re-added while draining out: the server still exists; reuse it.
            self.admin.set_addr(server, node.address, node.port)
            self.admin.set_weight(server, node.weight)
        else:
            params = server_params(change.cluster.settings, node)
            self.admin.add_server(server, node.haproxy_addr, params)
            self.admin.enable_health(server)
        state = admin_states.get(f"{change.cluster.name}/{node.name}", AdminState.READY)
        self.admin.set_state(server, state)

    def _update(self, change: NodeChange) -> None:
        old, node, server = change.old, change.node, change.server
        assert old is not None
        if (old.address, old.port) != (node.address, node.port):
            self.admin.set_addr(server, node.address, node.port)
            # Sessions to the old address are to the wrong machine now.
            self.admin.shutdown_sessions(server)
        if old.weight != node.weight:
            self.admin.set_weight(server, node.weight)

    def _start_removal(self, change: NodeChange) -> None:
        grace = change.cluster.settings.drain_grace_ms / 1000
        self.admin.set_state(change.server, AdminState.DRAIN)
        # Deleted by the next tick once drained: one `show stat` for all removals,
        # not one each (that made removing 1,000 nodes take half a minute).
        self.pending[change.server] = PendingRemoval(change.server, time.monotonic() + grace)

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
        self.admin.disable_health(server)
        self.admin.del_server(server)
        log.info("runtime: deleted %s", server)

    def _sessions(self) -> dict[str, int]:
        try:
            rows = self.admin.show_stat()
        except RuntimeApiError:
            return {}
        return {f"{backend}/{name}": int(row.get("scur") or 0)
                for (backend, name), row in rows.items()}

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
            for backend in sorted(backends):
                live.update(self.admin.show_servers_state(backend))
        problems = []
        for cluster in config.clusters:
            if backends is not None and cluster.backend not in backends:
                continue
            for node in cluster.nodes:
                row = live.pop((cluster.backend, node.name), None)
                want = (node.address, str(node.port), str(node.weight))
                got = (row.get("srv_addr"), row.get("srv_port"), row.get("srv_uweight")) \
                    if row else None
                if got != want:
                    problems.append(f"{server_id(cluster.name, node.name)}: want {want}, "
                                    f"have {got}")
        extra = [f"{b}/{s}" for b, s in live if cluster_of_backend(b) is not None
                 and f"{b}/{s}" not in self.pending]
        problems += [f"{server}: not in the config" for server in extra]
        return problems

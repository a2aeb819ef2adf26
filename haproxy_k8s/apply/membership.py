"""Node membership changes through the runtime API, without a reload.

Every command's success reply is known; anything else is an error, and the
caller falls back to a full reload. Removal is gentle and never blocks the
main loop: the server is drained at once and deleted by `tick()` once its
sessions are gone or its grace period ran out.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..config.model import Config
from ..errors import RuntimeApiError
from ..haproxy.render import server_params
from ..haproxy.replies import parse_servers_state, parse_show_stat
from ..haproxy.sockets import AdminSocket
from .plan import NodeChange

log = logging.getLogger(__name__)

_OK_REPLIES = ("", "New server registered.", "Server deleted.", "IP changed from",
               "no need to change", "port changed from", "Shutdown")


@dataclass
class PendingRemoval:
    server: str  # backend/name
    deadline: float
    attempts: int = 0


class RuntimeOps:
    def __init__(self, admin: AdminSocket) -> None:
        self.admin = admin
        self.pending: dict[str, PendingRemoval] = {}

    def run(self, command: str) -> str:
        reply = self.admin.command(command).strip()
        if not any(reply.startswith(ok) for ok in _OK_REPLIES if ok) and reply:
            raise RuntimeApiError(f"{command!r}: {reply}")
        return reply

    # -- changes -----------------------------------------------------------
    def apply(self, changes: tuple[NodeChange, ...], admin_states: dict[str, str]) -> None:
        for change in changes:
            log.info("runtime: %s", change.describe())
            if change.kind == "remove":
                self._start_removal(change)
            elif change.kind == "add":
                self._add(change, admin_states)
            else:
                self._update(change)

    def _add(self, change: NodeChange, admin_states: dict[str, str]) -> None:
        node, server = change.node, change.server
        if self.pending.pop(server, None) is not None:
            # Re-added while draining out: the server still exists; reuse it.
            self._set_addr(server, node.address, node.port)
            self.run(f"set server {server} weight {node.weight}")
        else:
            params = server_params(change.cluster.settings, node)
            self.run(f"add server {server} {node.haproxy_addr} {params}")
            self.run(f"enable health {server}")
        state = admin_states.get(f"{change.cluster.name}/{node.name}", "ready")
        self.run(f"set server {server} state {state}")

    def _update(self, change: NodeChange) -> None:
        old, node, server = change.old, change.node, change.server
        assert old is not None
        if (old.address, old.port) != (node.address, node.port):
            self._set_addr(server, node.address, node.port)
            # Sessions to the old address are to the wrong machine now.
            self.run(f"shutdown sessions server {server}")
        if old.weight != node.weight:
            self.run(f"set server {server} weight {node.weight}")

    def _set_addr(self, server: str, address: str, port: int) -> None:
        self.run(f"set server {server} addr {address} port {port}")

    def _start_removal(self, change: NodeChange) -> None:
        grace = change.cluster.settings.drain_grace_ms / 1000
        self.run(f"set server {change.server} state drain")
        self.pending[change.server] = PendingRemoval(change.server, time.monotonic() + grace)
        self.tick()

    # -- deferred removal --------------------------------------------------
    def tick(self) -> None:
        """Delete drained-out servers; called from the daemon's main loop."""
        if not self.pending:
            return
        sessions = self._sessions()
        now = time.monotonic()
        for server, item in list(self.pending.items()):
            if sessions.get(server, 0) > 0 and now < item.deadline:
                continue
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
        self.run(f"shutdown sessions server {server}")
        self.run(f"set server {server} state maint")
        self.run(f"disable health {server}")
        self.run(f"del server {server}")
        log.info("runtime: deleted %s", server)

    def _sessions(self) -> dict[str, int]:
        try:
            rows = parse_show_stat(self.admin.command("show stat"))
        except (RuntimeApiError, ValueError):
            return {}
        return {f"{r['pxname']}/{r['svname']}": int(r.get("scur") or 0) for r in rows}

    def forget_pending(self) -> None:
        """A reload replaced every server: pending deletions are moot."""
        self.pending.clear()

    # -- verification ------------------------------------------------------
    def mismatches(self, config: Config) -> list[str]:
        """Compare HAProxy's servers with `config`; an empty list means they agree."""
        rows = parse_servers_state(self.admin.command("show servers state"))
        live = {(r.get("be_name", ""), r.get("srv_name", "")): r for r in rows}
        problems = []
        for cluster in config.clusters:
            for node in cluster.nodes:
                row = live.pop((cluster.backend, node.name), None)
                want = (node.address, str(node.port), str(node.weight))
                got = (row.get("srv_addr"), row.get("srv_port"), row.get("srv_uweight")) \
                    if row else None
                if got != want:
                    problems.append(f"{cluster.backend}/{node.name}: want {want}, have {got}")
        extra = [f"{b}/{s}" for b, s in live if b.startswith("be_")
                 and f"{b}/{s}" not in self.pending]
        problems += [f"{server}: not in the config" for server in extra]
        return problems

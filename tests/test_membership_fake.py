"""Membership ops on a fake runtime client: which commands, in which order.

The real-HAProxy side of the same ops is covered by test_zero_disruption.py and
test_runtime_client.py; here a fake (same methods as RuntimeClient, an in-memory
server table, every call recorded) makes the order and the failure paths cheap
to pin down, including ones a real HAProxy rarely produces on demand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

import pytest

from haproxy_k8s.apply.membership import PendingRemoval, RuntimeOps
from haproxy_k8s.apply.plan import ChangeKind, NodeChange, PlanKind, make_plan
from haproxy_k8s.config.model import (
    AdminState,
    Balance,
    Bind,
    Cluster,
    ClusterSettings,
    Config,
    Node,
)
from haproxy_k8s.haproxy.render import server_params
from haproxy_k8s.haproxy.replies import ServerKey
from haproxy_k8s.haproxy.runtime import RuntimeReplyError

Call = tuple[object, ...]


class FakeRuntime:
    """Implements haproxy.runtime.AdminApi over a dict of servers."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.servers: dict[ServerKey, dict[str, str]] = {}
        self.refuse: dict[str, str] = {}  # method name -> HAProxy's reply text

    def _call(self, name: str, *args: object) -> None:
        self.calls.append((name, *args))
        if name in self.refuse:
            raise RuntimeReplyError(f"{name} {args[0] if args else ''}", self.refuse[name])

    @staticmethod
    def _key(server: str) -> ServerKey:
        backend, _, name = server.partition("/")
        return backend, name

    def add(self, server: str, address: str, port: int, weight: int = 100,
            sessions: int = 0) -> None:
        self.servers[self._key(server)] = {"addr": address, "port": str(port),
                                           "weight": str(weight), "scur": str(sessions)}

    # -- AdminApi ------------------------------------------------------------
    def show_server_stats(self, backend: str | None = None,
                          columns: Collection[str] | None = None
                          ) -> dict[ServerKey, dict[str, str]]:
        self._call("show_server_stats")
        return {k: {c: v[c] for c in columns or v if c in v}
                for k, v in self.servers.items() if backend in (None, k[0])}

    def show_servers_state(self, backend: str | None = None) -> dict[ServerKey, dict[str, str]]:
        self._call("show_servers_state")
        return {k: {"be_name": k[0], "srv_name": k[1], "srv_addr": v["addr"],
                    "srv_port": v["port"], "srv_uweight": v["weight"]}
                for k, v in self.servers.items() if backend in (None, k[0])}

    def add_server(self, server: str, addr: str, params: str) -> None:
        self._call("add_server", server, addr, params)
        address, _, port = addr.rpartition(":")
        weight = params.split("weight ")[1].split()[0]
        self.add(server, address, int(port), int(weight))

    def del_server(self, server: str) -> None:
        self._call("del_server", server)
        del self.servers[self._key(server)]

    def set_state(self, server: str, state: AdminState) -> None:
        self._call("set_state", server, state)

    def set_weight(self, server: str, weight: int) -> None:
        self._call("set_weight", server, weight)
        self.servers[self._key(server)]["weight"] = str(weight)

    def set_addr(self, server: str, address: str, port: int) -> None:
        self._call("set_addr", server, address, port)
        self.servers[self._key(server)].update(addr=address, port=str(port))

    def shutdown_sessions(self, server: str) -> None:
        self._call("shutdown_sessions", server)
        self.servers[self._key(server)]["scur"] = "0"

    def enable_health(self, server: str) -> None:
        self._call("enable_health", server)

    def disable_health(self, server: str) -> None:
        self._call("disable_health", server)

    def set_health(self, server: str, health: str) -> None:
        self._call("set_health", server, health)

    def changes(self) -> list[Call]:
        """The calls that change something (reads left out)."""
        return [c for c in self.calls if not str(c[0]).startswith("show_")]


M1 = Node("m1", "127.0.8.10")
M2 = Node("m2", "127.0.8.11", weight=50)
S1, S2 = "be_c0/m1", "be_c0/m2"


def config(*nodes: Node, grace_ms: int = 30_000, fail_open: bool = False) -> Config:
    settings = ClusterSettings(balance=Balance.ROUNDROBIN, drain_grace_ms=grace_ms,
                               fail_open=fail_open)
    return Config(clusters=(Cluster("c0", (Bind("127.0.8.1", 6443),), nodes, settings),))


def changes(old: Config, new: Config) -> tuple[NodeChange, ...]:
    return make_plan(old, new).changes


@pytest.fixture
def fake() -> FakeRuntime:
    runtime = FakeRuntime()
    runtime.add(S1, M1.address, M1.port)
    return runtime


def test_add_serves_only_after_a_check(fake: FakeRuntime) -> None:
    new = config(M1, M2)
    RuntimeOps(fake).apply(changes(config(M1), new), {})
    params = server_params(new.clusters[0].settings, M2)
    # Out of maintenance drained (no client), then NOLB until a check passes.
    assert fake.changes() == [("add_server", S2, "127.0.8.11:6443", params),
                              ("enable_health", S2), ("set_state", S2, AdminState.DRAIN),
                              ("set_health", S2, "stopping"),
                              ("set_state", S2, AdminState.READY)]
    assert RuntimeOps(fake).mismatches(new) == []


# A backup node (its own twin added up front) makes the twins a backend of their own.
BK = Node("b9", "127.0.8.19", backup=True)
# Where the twins of m1 and m2 live, and what `add server` is told for m2's.
TWINS = {
    "backups": ("be_c0/fo_m1", "be_c0/fo_m2", "weight 50 backup maxconn 1000000", ()),
    "backend": ("fo_c0/m1", "fo_c0/m2", "weight 50", (BK,)),
}


@pytest.mark.parametrize("where", sorted(TWINS))
def test_fail_open_twins_follow_every_change(fake: FakeRuntime, where: str) -> None:
    fo1, fo2, words, extra = TWINS[where]

    def cfg(*nodes: Node) -> Config:
        return config(*nodes, *extra, fail_open=True)

    fake.add(fo1, M1.address, M1.port)
    for node in extra:
        fake.add(f"be_c0/{node.name}", node.address, node.port)
        fake.add(f"fo_c0/{node.name}", node.address, node.port)
    ops = RuntimeOps(fake)
    ops.apply(changes(cfg(M1), cfg(M1, M2)), {"c0/m2": AdminState.MAINT})
    assert ("add_server", fo2, "127.0.8.11:6443", words) in fake.changes()
    assert fake.changes()[-1] == ("set_state", fo2, AdminState.MAINT)
    assert ops.mismatches(cfg(M1, M2)) == []
    fake.calls.clear()
    moved = dataclasses.replace(M2, address="127.0.8.12")
    ops.apply(changes(cfg(M1, M2), cfg(M1, moved)), {})
    assert [c[1] for c in fake.changes() if c[0] == "set_addr"] == [S2, fo2]
    fake.calls.clear()
    ops.apply(changes(cfg(M1, moved), cfg(M1)), {})
    assert [r.server for r in ops.pending.values() if r.node is not None] == [S2]  # status
    ops.tick()
    # Both deleted; only the checked one had health checks to disable.
    assert [c for c in fake.changes() if c[0] in ("del_server", "disable_health")] == [
        ("disable_health", S2), ("del_server", S2), ("del_server", fo2)]
    assert ops.mismatches(cfg(M1)) == []


def test_mismatches_see_a_missing_twin(fake: FakeRuntime) -> None:
    assert RuntimeOps(fake).mismatches(config(M1, fail_open=True)) == [
        "be_c0/fo_m1: want ('127.0.8.10', '6443', '100'), have None"]


def test_a_backup_node_moving_the_twins_is_a_reload() -> None:
    """Adding the first backup node (or removing the last) moves a fail-open
    cluster's twins out of its backend (or back): not a runtime change."""
    for old, new in ((config(M1, fail_open=True), config(M1, BK, fail_open=True)),
                     (config(M1, BK, fail_open=True), config(M1, fail_open=True))):
        plan = make_plan(old, new)
        assert plan.kind is PlanKind.RELOAD
        assert "a backup node changes how it fails open" in plan.reason
    # Without fail_open there are no twins to move: a backup node is added live.
    assert make_plan(config(M1), config(M1, BK)).kind is PlanKind.RUNTIME


def test_add_keeps_an_operators_drain(fake: FakeRuntime) -> None:
    RuntimeOps(fake).apply(changes(config(M1), config(M1, M2)), {"c0/m2": AdminState.DRAIN})
    assert fake.changes()[-1] == ("set_state", S2, AdminState.DRAIN)


def test_new_address_moves_and_cuts_sessions_new_weight_only_reweights(
        fake: FakeRuntime) -> None:
    moved = dataclasses.replace(M1, address="127.0.8.12", port=7443)
    RuntimeOps(fake).apply(changes(config(M1), config(moved)), {})
    assert fake.changes() == [("set_addr", S1, "127.0.8.12", 7443), ("shutdown_sessions", S1)]
    fake.calls.clear()
    heavier = dataclasses.replace(moved, weight=7)
    RuntimeOps(fake).apply(changes(config(moved), config(heavier)), {})
    assert fake.changes() == [("set_weight", S1, 7)]


def test_removal_drains_then_deletes_once_sessions_are_gone(fake: FakeRuntime) -> None:
    fake.add(S2, M2.address, M2.port, sessions=3)
    ops = RuntimeOps(fake)
    ops.apply(changes(config(M1, M2), config(M1)), {})
    assert fake.changes() == [("set_state", S2, AdminState.DRAIN)]
    assert S2 in ops.pending  # sessions left, grace not over: wait
    fake.servers[("be_c0", "m2")]["scur"] = "0"
    ops.tick()
    assert fake.changes()[1:] == [("shutdown_sessions", S2), ("set_state", S2, AdminState.MAINT),
                                  ("disable_health", S2), ("del_server", S2)]
    assert not ops.pending and ("be_c0", "m2") not in fake.servers


def test_removal_cuts_sessions_when_the_grace_period_is_over(fake: FakeRuntime) -> None:
    fake.add(S2, M2.address, M2.port, sessions=3)
    ops = RuntimeOps(fake)
    ops.apply(changes(config(M1, M2, grace_ms=0), config(M1, grace_ms=0)), {})
    ops.tick()  # the daemon's next round
    assert ("del_server", S2) in fake.changes() and not ops.pending


def test_readded_while_draining_reuses_the_server(fake: FakeRuntime) -> None:
    fake.add(S2, M2.address, M2.port, sessions=3)
    ops = RuntimeOps(fake)
    ops.apply(changes(config(M1, M2), config(M1)), {})
    fake.calls.clear()
    ops.apply(changes(config(M1), config(M1, M2)), {})
    assert fake.changes() == [("set_addr", S2, M2.address, M2.port), ("set_weight", S2, 50),
                              ("set_state", S2, AdminState.READY)]
    assert not ops.pending


def test_a_refused_delete_is_retried_then_left_to_the_next_reload(fake: FakeRuntime) -> None:
    fake.add(S2, M2.address, M2.port)
    fake.refuse["del_server"] = "Only servers in maintenance mode can be deleted."
    ops = RuntimeOps(fake)
    ops.apply(changes(config(M1, M2), config(M1)), {})
    ops.tick()  # the daemon's next round
    assert ops.pending[S2].attempts == 1
    for _ in range(18):
        ops.tick()
    assert ops.pending[S2].attempts == 19
    ops.tick()
    assert not ops.pending
    assert sum(1 for c in fake.calls if c[0] == "del_server") == 20


def test_a_refused_add_propagates_for_the_reload_fallback(fake: FakeRuntime) -> None:
    fake.refuse["add_server"] = "Already exists a server with the same name in backend."
    with pytest.raises(RuntimeReplyError, match="Already exists"):
        RuntimeOps(fake).apply(changes(config(M1), config(M1, M2)), {})


def test_mismatches_name_differences_and_strays_but_not_pending_removals(
        fake: FakeRuntime) -> None:
    ops = RuntimeOps(fake)
    assert ops.mismatches(config(M1)) == []
    fake.servers[("be_c0", "m1")]["weight"] = "3"
    fake.add("be_c0/stray", "127.0.8.13", 6443)
    fake.add("other/x", "127.0.8.14", 6443)  # not a backend we made: none of our business
    assert ops.mismatches(config(M1)) == [
        "be_c0/m1: want ('127.0.8.10', '6443', '100'), have ('127.0.8.10', '6443', '3')",
        "be_c0/stray: not in the config"]
    ops.pending["be_c0/stray"] = PendingRemoval("be_c0/stray", deadline=0.0)
    assert ops.mismatches(config(M1))[1:] == []


def test_change_kinds_are_the_plan_strings() -> None:
    assert [str(k) for k in ChangeKind] == ["add", "remove", "update"]


def test_many_removals_cost_one_stat_read_per_tick_and_bounded_deletes(
        fake: FakeRuntime) -> None:
    """Removing thousands of nodes must not read `show stat` once per node (quadratic)
    nor delete them all in one round of the main loop."""
    from haproxy_k8s.apply.membership import DELETES_PER_TICK

    nodes = [Node(f"n{i}", f"127.0.9.{i % 250 + 1}", 7000 + i, weight=50) for i in range(500)]
    for node in nodes:
        fake.add(f"be_c0/{node.name}", node.address, node.port)
    ops = RuntimeOps(fake)
    beats: list[int] = []
    ops.heartbeat = lambda: beats.append(1)
    ops.apply(changes(config(*nodes, grace_ms=0), config(grace_ms=0)), {})
    assert sum(1 for call in fake.calls if call[0] == "show_server_stats") == 0
    assert beats, "a long batch calls the heartbeat"
    ops.tick()
    deleted = sum(1 for call in fake.changes() if call[0] == "del_server")
    assert deleted == DELETES_PER_TICK
    assert sum(1 for call in fake.calls if call[0] == "show_server_stats") == 1
    while ops.pending:
        ops.tick()
    assert sum(1 for call in fake.changes() if call[0] == "del_server") == 500

"""The plan step: which changes go through the runtime API and which need a reload."""

from __future__ import annotations

import dataclasses

import pytest

from haproxy_k8s.apply.plan import PlanKind, make_plan
from haproxy_k8s.config.model import Balance, Bind, Cluster, ClusterSettings, Config, Node

M1 = Node("m1", "127.0.8.10")
M2 = Node("m2", "127.0.8.11")


def config(*nodes: Node, bind: int = 6443, balance: Balance = Balance.LEASTCONN,
           timeout: int = 10_000) -> Config:
    settings = ClusterSettings(balance=balance, connect_timeout_ms=timeout)
    cluster = Cluster("c0", (Bind("127.0.8.1", bind),), tuple(nodes), settings)
    return Config(clusters=(cluster,))


CASES = [
    ("same", config(M1), config(M1), PlanKind.NOOP, []),
    ("add node", config(M1), config(M1, M2), PlanKind.RUNTIME, ["add c0/m2"]),
    ("remove node", config(M1, M2), config(M1), PlanKind.RUNTIME, ["remove c0/m2"]),
    ("new port", config(M1), config(dataclasses.replace(M1, port=7443)), PlanKind.RUNTIME,
     ["update c0/m1"]),
    ("new weight", config(M1), config(dataclasses.replace(M1, weight=5)), PlanKind.RUNTIME,
     ["update c0/m1"]),
    ("bind", config(M1), config(M1, bind=7443), PlanKind.RELOAD, []),
    ("timeout", config(M1), config(M1, timeout=5000), PlanKind.RELOAD, []),
    ("static balance", config(M1, balance=Balance.SOURCE), config(M1, M2, balance=Balance.SOURCE),
     PlanKind.RELOAD, []),
    ("dns name", config(M1), config(M1, Node("m3", "node3.example")), PlanKind.RELOAD, []),
    ("backup flag", config(M1), config(dataclasses.replace(M1, backup=True)), PlanKind.RELOAD, []),
    ("new cluster", config(M1), Config(clusters=(*config(M1).clusters, Cluster(
        "c1", (Bind("127.0.8.1", 7000),), (M2,)))), PlanKind.RELOAD, []),
]


@pytest.mark.parametrize(("name", "old", "new", "kind", "changes"), CASES,
                         ids=[c[0] for c in CASES])
def test_plan(name: str, old: Config, new: Config, kind: PlanKind, changes: list[str]) -> None:
    plan = make_plan(old, new)
    assert plan.kind == kind, plan.reason
    assert [c.describe() for c in plan.changes] == changes


def test_nothing_applied_yet_means_reload() -> None:
    assert make_plan(None, config(M1)).kind == PlanKind.RELOAD

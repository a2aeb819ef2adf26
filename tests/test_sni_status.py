"""The status document's `sni`, `fail_open` and `fail_open_active`, and how `status` shows them."""

from __future__ import annotations

from haproxy_k8s.cli.status import format_table
from haproxy_k8s.daemon.status import (
    EXIT_CLUSTER_DOWN,
    ClusterShape,
    DaemonStatus,
    HaproxyStatus,
    NodeShape,
    StatusDocument,
    build,
    exit_code,
)

SHAPE = [ClusterShape("c0", ("127.0.8.1:6443",), (NodeShape("m1", "127.0.8.10", 6443),
                                                  NodeShape("m2", "127.0.8.11", 6443)),
                      ("c0.example", "*.c0.example"), True)]


def doc(m1: str, m2: str, fail_open: bool = True) -> StatusDocument:
    shape = [ClusterShape(**{**SHAPE[0].__dict__, "fail_open": fail_open})]
    rows = {("be_c0", "m1"): {"status": m1}, ("be_c0", "m2"): {"status": m2}}
    return build(DaemonStatus(pid=1, running=True), HaproxyStatus(), shape, rows)


def test_fail_open_is_active_only_while_no_node_is_up() -> None:
    assert doc("DOWN", "DOWN").clusters[0].fail_open_active
    assert not doc("UP", "DOWN").clusters[0].fail_open_active
    assert not doc("DOWN", "DOWN", fail_open=False).clusters[0].fail_open_active
    # Nodes an operator took out stay out, so nothing would serve: not failing open.
    assert not doc("MAINT", "DRAIN").clusters[0].fail_open_active


def test_fail_open_keeps_exit_code_2_and_says_so() -> None:
    d = doc("DOWN", "DOWN")
    assert exit_code(d) == EXIT_CLUSTER_DOWN
    table = format_table(d)
    assert "c0 (0/2 up, FAIL-OPEN)" in table
    assert table.splitlines()[-1].startswith("down: no UP node in c0 (FAIL-OPEN")


def test_hostnames_in_json_and_table_and_back() -> None:
    d = doc("UP", "NOLB")
    data = d.to_json()["clusters"][0]
    assert data["sni"] == ["c0.example", "*.c0.example"]
    assert data["fail_open"] is True and data["fail_open_active"] is False
    assert "c0.example,*.c0.example" in format_table(d)
    again = StatusDocument.from_json(d.to_json())
    assert again.clusters[0].sni == ["c0.example", "*.c0.example"]
    assert again.clusters[0].fail_open is True
    # A new node waiting for its first check (NOLB) is not UP: degraded, exit 1.
    assert exit_code(d) == 1

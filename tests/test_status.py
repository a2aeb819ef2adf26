"""The status document: node states, exit codes, and the table an operator reads."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import pytest

from haproxy_k8s.cli.status import format_table
from haproxy_k8s.daemon.states import StatRows, node_state
from haproxy_k8s.daemon.status import (
    EXIT_CLUSTER_DOWN,
    EXIT_DEGRADED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    STATES,
    ClusterCache,
    ClusterStatus,
    NodeStatus,
    StatusDocument,
    cluster_statuses,
    exit_code,
    parse_utc,
    shape_of_saved,
    state_counts,
    utc_now,
    verdict,
)


def overlay(saved: list[dict[str, Any]], rows: StatRows | None) -> list[ClusterStatus]:
    """Re-state a saved cluster list (status.json) from fresh `show stat` rows."""
    clusters = StatusDocument.from_json({"clusters": saved}).clusters
    return cluster_statuses(shape_of_saved(clusters), rows)


@pytest.mark.parametrize(("status", "state"), [
    ("UP", "UP"), ("UP 1/2", "UP"), ("DOWN", "DOWN"), ("DOWN 1/3", "DOWN"),
    ("NOLB", "NOLB"), ("MAINT", "MAINT"), ("MAINT (resolution)", "MAINT"),
    ("MAINT (via be_x/y)", "MAINT"), ("DRAIN", "DRAIN"), ("DRAIN (agent)", "DRAIN"),
    ("no check", "UP"), ("OPEN", "UNKNOWN"), ("", "UNKNOWN"),
])
def test_node_state(status: str, state: str) -> None:
    assert node_state({"status": status}) == state
    assert state in STATES


def test_node_entry_from_a_stat_row() -> None:
    entry = asdict(NodeStatus.of("m1", "10.0.0.1", 6443, {
        "status": "DOWN", "check_status": "L7STS", "check_code": "500",
        "check_duration": "3", "lastchg": "12", "scur": "4", "last_chk": "Internal Server Error",
        "weight": "100", "rate": "7"}))
    assert entry == {"name": "m1", "address": "10.0.0.1", "port": 6443, "state": "DOWN",
                     "check": "L7STS/500 in 3ms", "last_change_s": 12, "sessions": 4,
                     "admin": "ready", "check_detail": "Internal Server Error",
                     "removing": False, "weight": 100, "rate": 7, "source": "static",
                     "origin": ""}
    unknown = NodeStatus.of("m1", "10.0.0.1", 6443, None)
    assert unknown.state == "UNKNOWN" and unknown.sessions is None


def doc(*ups: tuple[int, int], running: bool = True, reachable: bool = True) -> dict[str, Any]:
    # `up` nodes UP, the rest DOWN: the document counts them itself.
    clusters = [{"name": f"c{i}", "bind": ["127.0.8.1:6443"], "up": up, "total": total,
                 "nodes": [{"name": f"m{n}", "state": "UP" if n < up else "DOWN"}
                           for n in range(total)]}
                for i, (up, total) in enumerate(ups)]
    unreachable = [] if running else ["daemon: not running"]
    unreachable += [] if reachable else ["admin socket: cannot connect"]
    return {"daemon": {"running": running}, "haproxy": {"reachable": reachable},
            "clusters": clusters, "unreachable": unreachable}


@pytest.mark.parametrize(("d", "code", "words"), [
    (doc((3, 3), (2, 2)), EXIT_OK, "healthy"),
    (doc((2, 3), (2, 2)), EXIT_DEGRADED, "degraded: c0 2/3 up"),
    (doc((2, 3), (0, 2)), EXIT_CLUSTER_DOWN, "down: no UP node in c1"),
    (doc((3, 3), reachable=False), EXIT_UNREACHABLE, "cannot reach admin socket"),
    # The daemon down is "cannot be reached" too, even while HAProxy serves.
    (doc((3, 3), running=False), EXIT_UNREACHABLE, "cannot reach daemon"),
    (doc((0, 3), running=False, reachable=False), EXIT_UNREACHABLE,
     "cannot reach daemon, admin socket"),
])
def test_exit_codes_and_verdict(d: dict[str, Any], code: int, words: str) -> None:
    assert exit_code(d) == code
    assert words in verdict(d)


def test_overlay_restates_saved_nodes_from_fresh_rows() -> None:
    saved = [{"name": "c0", "bind": ["127.0.8.1:6443"], "up": 2, "total": 2, "nodes": [
        {"name": "m1", "address": "10.0.0.1", "port": 6443, "state": "UP"},
        {"name": "m2", "address": "10.0.0.2", "port": 6443, "state": "UP"}]}]
    fresh = overlay(saved, {("be_c0", "m1"): {"status": "DOWN"}})
    assert [n.state for n in fresh[0].nodes] == ["DOWN", "UNKNOWN"]
    assert (fresh[0].up, fresh[0].total) == (0, 2)
    # No stats at all: nothing is known, whatever the saved file said.
    assert overlay(saved, None)[0].up == 0


def test_state_counts_have_every_state() -> None:
    clusters = overlay([{"name": "c0", "nodes": [{"name": "m1"}, {"name": "m2"}]}],
                       {("be_c0", "m1"): {"status": "UP"}})
    counts = state_counts(clusters)
    assert counts[("c0", "UP")] == 1 and counts[("c0", "UNKNOWN")] == 1
    assert {state for _, state in counts} == set(STATES)


def test_utc_round_trip() -> None:
    stamp = parse_utc(utc_now())
    assert stamp is not None and stamp > 1.7e9
    assert parse_utc(None) is None and parse_utc("yesterday") is None


def test_table_reads_at_a_glance() -> None:
    d = {
        "daemon": {"pid": 10, "running": True, "generation": 7, "applied_at": "2026-01-01T00:00Z",
                   "last_error": {"at": "x", "file": "conf.d/30-bad.toml", "message": "bad port"}},
        "haproxy": {"pid": 11, "version": "2.6.12", "reloads": 3, "failed_reloads": 1,
                    "workers": [12], "reachable": True},
        "clusters": [c.to_json() for c in overlay([
            {"name": "cluster-0", "bind": ["127.0.8.1:6443"], "nodes": [
            {"name": "m1", "address": "127.0.8.10", "port": 6443},
            {"name": "m2", "address": "127.0.8.11", "port": 6443}]}], {
            ("be_cluster-0", "m1"): {"status": "UP", "check_status": "L7OK", "check_code": "200",
                                     "check_duration": "2", "lastchg": "3700", "scur": "5"},
            ("be_cluster-0", "m2"): {"status": "DOWN", "check_status": "L4CON",
                                     "last_chk": "Connection refused", "lastchg": "42"}})],
        "unreachable": [],
    }
    lines = format_table(d).splitlines()
    assert "generation 7" in lines[0] and "2.6.12" in lines[1]
    assert "conf.d/30-bad.toml: bad port" in lines[2]
    header = next(line for line in lines if line.startswith("CLUSTER"))
    # No cluster names SNI hostnames here: no SNI column (test_sni_status.py has one).
    assert header.split() == ["CLUSTER", "BIND", "NODE", "ADDRESS", "STATE", "LAST", "CHECK",
                              "SINCE", "SESSIONS"]
    m1 = next(line for line in lines if " m1 " in line)
    m2 = next(line for line in lines if " m2 " in line)
    assert m1.startswith("cluster-0 (1/2 up)") and "127.0.8.1:6443" in m1
    assert "L7OK/200 in 2ms" in m1 and "1h" in m1 and m1.endswith("5")
    assert m2.startswith(" ") and "DOWN" in m2 and "L4CON (Connection refused)" in m2
    assert "42s" in m2
    # Columns line up: the state column starts at the same place on every row.
    assert m1.index("UP ") == m2.index("DOWN") == header.index("STATE")
    assert lines[-1] == "degraded: cluster-0 1/2 up"


def test_ages_are_brought_to_now_by_when_each_backend_was_read() -> None:
    from haproxy_k8s.daemon.requests import ages_to_now

    doc = StatusDocument.from_json({"clusters": [
        {"name": name, "nodes": [{"name": "n1"}]} for name in ("a", "b", "c")]})
    # a was read 40 s ago (slow full read), b just now (news); c never.
    assert ages_to_now(doc, {"be_a": 60.0, "be_b": 100.0}, now=100.0) == {"a": 40, "b": 0}


def test_a_kept_clusters_text_takes_new_ages_and_nothing_else() -> None:
    """The `document` request's ages: the kept text with `seconds` added to each node's
    last_change_s, exactly as encoding the cluster with those ages would give."""
    odd = 'say "last_change_s":5 100% \\ "'  # the field's text inside a string stays
    shape = shape_of_saved(StatusDocument.from_json({"clusters": [{"name": "a", "nodes": [
        {"name": "n1"}, {"name": "n2"}, {"name": "n3"}]}]}).clusters)
    rows: StatRows = {("be_a", "n1"): {"status": "UP", "lastchg": "5", "last_chk": odd},
                      ("be_a", "n2"): {"status": "DOWN", "lastchg": "0"},
                      ("be_a", "n3"): {"status": "UP"}}  # no age: stays null
    cache = ClusterCache()
    [cluster] = cache.statuses(shape, rows)
    for seconds in (0, 40, 7, 0):
        data = cluster.to_json()
        for node in data["nodes"]:
            if node["last_change_s"] is not None:
                node["last_change_s"] += seconds
        assert cache.aged_text(cluster, seconds) == json.dumps(data, separators=(",", ":"))
    assert cache.text_of(cluster) == json.dumps(cluster.to_json(), separators=(",", ":"))


def test_the_cluster_cache_answers_from_the_same_rows_and_rebuilds_on_new_ones() -> None:
    shape = shape_of_saved(StatusDocument.from_json({"clusters": [
        {"name": name, "nodes": [{"name": "n1"}, {"name": "n2"}]} for name in ("a", "b")]})
        .clusters)
    rows: StatRows = {(f"be_{c}", n): {"status": "UP"} for c in "ab" for n in ("n1", "n2")}
    cache = ClusterCache()
    first = cache.statuses(shape, rows)
    again = cache.statuses(shape, rows)
    assert again is not first and all(x is y for x, y in zip(again, first, strict=True))
    # A new poll (a new mapping): what changed is rebuilt, the rest is kept.
    down = {**rows, ("be_b", "n2"): {"status": "DOWN"}}
    a, b = cache.statuses(shape, down)
    assert a is first[0] and (b.up, b.total) == (1, 2)
    assert [c.up for c in cache.statuses(shape, down, {"a": {"state": "synced"}})] == [2, 1]
    assert cache.statuses(shape, down, {"a": {"state": "synced"}})[0].discovery \
        == {"state": "synced"}

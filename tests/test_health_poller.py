"""The health poller: transitions logged once, a lock-protected snapshot, a clean stop."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import cast

import pytest
from conftest import StandInFactory
from haproxyutil import cluster, config, running, settings
from helpers import wait_until

from haproxy_k8s.config.model import Config
from haproxy_k8s.daemon.health import (
    MAX_INTERVAL,
    MIN_INTERVAL,
    THREAD_NAME,
    UNREACHABLE_AFTER,
    HealthPoller,
    HealthSnapshot,
    describe,
    poll_interval,
    transitions,
    up_nodes_of,
)


def row(status: str, check: str = "", code: str = "", detail: str = "") -> dict[str, str]:
    return {"status": status, "check_status": check, "check_code": code, "last_chk": detail}


@pytest.mark.parametrize(("before", "r", "line"), [
    ("UP", row("DOWN", "L4CON", detail="Connection refused"),
     "cluster-0/m1 UP → DOWN (L4CON: Connection refused)"),
    ("UP", row("DOWN", "L7STS", "500", "Internal Server Error"),
     "cluster-0/m1 UP → DOWN (L7STS/500: Internal Server Error)"),
    ("DOWN", row("UP", "L7OK", "200"), "cluster-0/m1 DOWN → UP (L7OK/200)"),
    (None, row("UP", "INI"), "cluster-0/m1 is UP (first check pending)"),
    ("UP", row("MAINT", "L7OK", "200"), "cluster-0/m1 UP → MAINT"),
    ("UP", row("MAINT (resolution)"), "cluster-0/m1 UP → MAINT (MAINT (resolution))"),
    ("UP", row("DRAIN", "L7OK", "200"), "cluster-0/m1 UP → DRAIN"),
])
def test_describe(before: str | None, r: dict[str, str], line: str) -> None:
    assert describe(("be_cluster-0", "m1"), before, r) == line


def test_transitions_only_for_our_servers_and_real_changes() -> None:
    rows = {
        ("be_c0", "m1"): row("UP 1/2", "L4CON"),  # still UP: going down is not a transition
        ("be_c0", "m2"): row("DOWN", "L4CON"),
        ("be_c0", "BACKEND"): row("DOWN"),
        ("fe_c0", "FRONTEND"): row("OPEN"),
        ("stats", "FRONTEND"): row("OPEN"),
        ("be_c1", "m3"): row("UP", "L7OK", "200"),
        ("be_c1", "fo_m3"): row("no check"),  # m3's fail-open twin: not a node
    }
    changed = transitions({("be_c0", "m1"): "UP", ("be_c0", "m2"): "UP"}, rows)
    assert [(key, before) for key, before, _ in changed] == [
        (("be_c0", "m2"), "UP"), (("be_c1", "m3"), None)]


class _Polled:
    def __init__(self, rows: dict[tuple[str, str], dict[str, str]]) -> None:
        self.rows = rows

    def latest(self) -> HealthSnapshot:
        return HealthSnapshot(rows=self.rows)


def test_up_nodes_are_nodes_not_their_fail_open_twins() -> None:
    """Twins have no check, so HAProxy calls them UP: a cluster whose nodes
    are all DOWN has no UP node all the same (discovery then watches them
    directly)."""
    rows = {("be_c0", "m1"): row("DOWN", "L4CON"), ("be_c0", "fo_m1"): row("no check"),
            ("be_c0", "BACKEND"): row("UP"), ("be_c1", "m2"): row("UP", "L7OK", "200"),
            ("be_c1", "fo_m2"): row("no check")}
    up = up_nodes_of(lambda: cast(HealthPoller, _Polled(rows)))
    assert up("c0") == frozenset() and up("c1") == frozenset({"m2"})


def test_poll_interval_follows_the_fastest_check(short_tmp: Path) -> None:
    assert poll_interval(None) == MAX_INTERVAL
    fast = cluster("a", [], settings(check_interval_ms=300))
    slow = cluster("b", [], settings(check_interval_ms=5000))
    assert poll_interval(config("haproxy", short_tmp, [fast, slow])) == 0.3
    assert poll_interval(config("haproxy", short_tmp, [slow])) == MAX_INTERVAL
    tiny = cluster("c", [], settings(check_interval_ms=10))
    assert poll_interval(config("haproxy", short_tmp, [tiny])) == MIN_INTERVAL
    assert poll_interval(Config()) == MAX_INTERVAL


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.mark.usefixtures("haproxy_bin")
def test_poller_follows_real_haproxy_and_logs_each_transition_once(
        haproxy_bin: str, short_tmp: Path, standin_factory: StandInFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="haproxy_k8s.daemon.health")
    node = standin_factory("m1")
    changes = threading.Semaphore(0)
    with running(config(haproxy_bin, short_tmp / "state", [cluster("c0", [node])])) as paths:
        poller = HealthPoller(paths.admin_socket, interval=0.05, on_change=changes.release)
        poller.start()
        try:
            assert [t for t in threading.enumerate() if t.name == THREAD_NAME]

            def state() -> str | None:
                rows = poller.latest().rows
                return rows[("be_c0", "m1")]["status"] if rows else None

            wait_until(lambda: state() == "UP", message="first snapshot")
            node.readyz_status = 500
            wait_until(lambda: state() == "DOWN", message="DOWN seen by the poller")
            node.readyz_status = 200
            wait_until(lambda: state() == "UP", message="UP again")
            seen = poller.latest().taken_at
            wait_until(lambda: poller.latest().taken_at > seen + 0.2, message="more polls")
        finally:
            poller.stop()
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]
    assert messages(caplog, "c0/m1 is UP") != []
    assert messages(caplog, "c0/m1 UP → DOWN (L7STS/500: Internal Server Error)") != []
    assert len(messages(caplog, "UP → DOWN")) == 1
    assert len(messages(caplog, "DOWN → UP")) == 1
    assert changes.acquire(timeout=0)  # the daemon was woken for the transitions


@pytest.mark.usefixtures("haproxy_bin")
def test_a_full_read_asked_for_is_announced_without_a_change(
        haproxy_bin: str, short_tmp: Path, standin_factory: StandInFactory) -> None:
    """After an apply the daemon asks for a full read; the loop hears of it even
    when no server changed, so the status built from the renewed rows is written."""
    node = standin_factory("m1")
    with running(config(haproxy_bin, short_tmp / "state", [cluster("c0", [node])])) as paths:
        poller = HealthPoller(paths.admin_socket, interval=60.0)  # no timed full read
        poller.start()
        try:
            wait_until(lambda: poller.latest().rows is not None, message="first read")
            first = poller.latest().taken_at
            poller.request_full()  # ends after the first read's own news, if any
            wait_until(lambda: poller.latest().taken_at > first, message="second read")
            second = poller.latest().taken_at
            announced = threading.Semaphore(0)
            poller.on_change = announced.release
            poller.request_full()
            wait_until(lambda: poller.latest().taken_at > second, message="third read")
            assert announced.acquire(timeout=10)
        finally:
            poller.stop()


def test_unreachable_socket_is_reported_once(short_tmp: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    poller = HealthPoller(short_tmp / "missing.sock")
    assert not poller.latest().reachable  # nothing polled yet: nothing known
    for _ in range(UNREACHABLE_AFTER * 2):
        snapshot = poller.poll()
    assert not snapshot.reachable and "missing.sock" in str(snapshot.error)
    assert len(messages(caplog, "cannot read HAProxy's stats")) == 1

"""HAProxy's log messages as the health view's news feed (haproxy/logs.py, daemon/logsink.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import StandInFactory
from haproxyutil import cluster, config, running
from helpers import wait_until

from haproxy_k8s.daemon.health import THREAD_NAME, HealthPoller
from haproxy_k8s.daemon.logsink import THREAD_NAME as SINK_THREAD
from haproxy_k8s.haproxy.logs import parse_log
from haproxy_k8s.haproxy.paths import StatePaths

# Captured from Debian 12's HAProxy 2.6.12 with `log <path> local0 notice`.
CAPTURED = [
    (b'<129>Nov 28 05:57:20 haproxy[832]: Server be_a/n1 is DOWN, reason: Layer4 connection '
     b'problem, info: "Connection refused", check duration: 0ms. 1 active and 0 backup '
     b'servers left. 0 sessions active, 0 requeued, 0 remaining in queue.\n',
     1, "be_a", "n1"),
    (b"<133>Nov 28 05:57:21 haproxy[832]: Server be_a/n1 was DOWN and now enters "
     b"maintenance.\n", 5, "be_a", "n1"),
    (b"<128>Nov 28 05:57:20 haproxy[832]: backend be_a has no server available!\n",
     0, "be_a", None),
    (b"<133>Nov 28 05:58:02 haproxy[832]: Server be_c-1/m.2 is UP, reason: Layer4 check "
     b"passed, check duration: 0ms. 2 active and 0 backup servers online. 0 sessions "
     b"requeued, 0 total in queue.\n", 5, "be_c-1", "m.2"),
    # The text as HAProxy 2.6.12 wrote it on stderr, after the same header.
    (b"<133>Nov 28 21:20:11 haproxy[832]: Backup Server be_x/fo_n1 is going DOWN for "
     b"maintenance. 1 active and 1 backup servers left. 0 sessions active, 0 requeued, "
     b"0 remaining in queue.\n", 5, "be_x", "fo_n1"),
    (b"<132>Nov 28 05:57:22 haproxy[832]: Proxy be_a stopped (cumulated conns: FE: 0, "
     b"BE: 0).\n", 4, None, None),
]


@pytest.mark.parametrize(("datagram", "severity", "backend", "server"), CAPTURED)
def test_parse_captured_messages(datagram: bytes, severity: int, backend: str | None,
                                 server: str | None) -> None:
    message = parse_log(datagram)
    assert message is not None
    assert (message.severity, message.backend, message.server) == (severity, backend, server)
    assert not message.text.startswith("<")


@pytest.mark.parametrize("datagram", [b"", b"hello", b"\0wake", b"<12 no header"])
def test_not_syslog_is_ignored(datagram: bytes) -> None:
    assert parse_log(datagram) is None


@pytest.mark.usefixtures("haproxy_bin")
def test_transitions_arrive_as_log_messages_between_full_polls(
        haproxy_bin: str, short_tmp: Path, standin_factory: StandInFactory) -> None:
    """With an hour between full polls, only the log messages can tell the poller."""
    node = standin_factory("m1")
    paths = StatePaths(short_tmp / "state")
    paths.ensure_root()
    poller = HealthPoller(paths.admin_socket, interval=3600.0)
    poller.listen(paths.log_socket)
    assert poller.events_live and poller.full_interval() == 3600.0
    with running(config(haproxy_bin, paths.root, [cluster("c0", [node])])):
        poller.start()
        try:
            def state() -> str | None:
                rows = poller.latest().rows
                row = rows.get(("be_c0", "m1")) if rows else None
                return row["status"] if row else None

            wait_until(lambda: state() == "UP", message="first (full) poll")
            node.readyz_status = 500
            wait_until(lambda: state() == "DOWN", message="DOWN from a log message")
            node.readyz_status = 200
            wait_until(lambda: state() == "UP", message="UP from a log message")
            assert poller._sink is not None and poller._sink.received >= 2
        finally:
            poller.stop()
    names = {t.name for t in threading.enumerate()}
    assert THREAD_NAME not in names and SINK_THREAD not in names


def test_unbindable_socket_falls_back_to_polling(short_tmp: Path) -> None:
    paths = StatePaths(short_tmp)
    holder = HealthPoller(paths.admin_socket)
    holder.listen(paths.log_socket)  # another daemon holds the address
    poller = HealthPoller(paths.admin_socket, interval=0.5)
    poller.listen(paths.log_socket)
    assert holder.events_live and not poller.events_live and poller.full_interval() == 0.5
    holder.stop()

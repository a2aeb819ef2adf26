"""The daemon speaks sd_notify to a real datagram socket, as systemd would see it."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess
from helpers import free_port, wait_until

pytestmark = pytest.mark.usefixtures("haproxy_bin")


class NotifySocket:
    """What systemd listens on: collects every datagram the daemon sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096).decode()
            except BlockingIOError:
                return self.messages
            self.messages.append(dict(line.split("=", 1) for line in data.splitlines()))

    def seen(self, key: str, value: str | None = None) -> list[dict[str, str]]:
        return [m for m in self.drain() if key in m and (value is None or m[key] == value)]


@pytest.fixture
def notify(short_tmp: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(short_tmp / "notify.sock")
    try:
        yield sock
    finally:
        sock.sock.close()


def test_ready_reloading_status_and_watchdog(short_tmp: Path, notify: NotifySocket,
                                             standin_factory: StandInFactory) -> None:
    node = standin_factory("m1", tls=False)
    config = ConfigDir(short_tmp)
    config.cluster("cluster-0", free_port(BALANCER), {"m1": (node.host, node.port)})
    daemon = DaemonProcess(config, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="400000")
    try:
        daemon.start()
        ready = wait_until(lambda: notify.seen("READY", "1"), 5.0)
        assert ready[0]["STATUS"].startswith("cluster-0: ")
        assert "generation 1" in ready[0]["STATUS"]
        wait_until(lambda: notify.seen("WATCHDOG", "1"), 5.0, message="watchdog pings")
        readies = len(notify.seen("READY", "1"))
        daemon.signal(signal.SIGHUP)
        reloading = wait_until(lambda: notify.seen("RELOADING", "1"), 5.0)
        assert int(reloading[0]["MONOTONIC_USEC"]) > 0
        wait_until(lambda: len(notify.seen("READY", "1")) > readies, 5.0,
                   message="READY=1 again after the reload")
    finally:
        daemon.stop()
    wait_until(lambda: notify.seen("STOPPING", "1"), 5.0)

"""The daemon's metrics endpoint: an allowlist and basic auth like the stats page, and a
bound on connections (idle ones time out, at most a few threads); state file modes."""

from __future__ import annotations

import base64
import http.client
import ipaddress
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess
from helpers import free_port, wait_until

from haproxy_k8s.config.model import Bind
from haproxy_k8s.daemon.access import Access
from haproxy_k8s.daemon.metrics import MAX_CONNECTIONS, MetricsExporter

OUTSIDE = "127.0.9.1"  # loopback, but outside the 127.0.8.0/24 allow list
INSIDE = "127.0.8.2"


def get(port: int, source: str, auth: str | None = None) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection(BALANCER, port, timeout=5.0, source_address=(source, 0))
    headers = {"Connection": "close"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    try:
        conn.request("GET", "/metrics", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    finally:
        conn.close()


def assert_guarded(port: int, password: str) -> None:
    assert get(port, OUTSIDE, f"prom:{password}")[0] == 403
    status, headers = get(port, INSIDE)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert get(port, INSIDE, "prom:wrong")[0] == 401
    assert get(port, INSIDE, f"other:{password}")[0] == 401
    assert get(port, INSIDE, f"prom:{password}")[0] == 200


def idle_connections(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection((BALANCER, port), timeout=5.0)
        socks.append(sock)
    return socks


def test_allowlist_auth_and_bounded_threads() -> None:
    exporter = MetricsExporter()
    port = free_port(BALANCER)
    access = Access((ipaddress.ip_network("127.0.8.0/24"),), "prom", "s3:cret")
    exporter.serve(Bind(BALANCER, port), access)
    socks: list[socket.socket] = []
    try:
        assert_guarded(port, "s3:cret")
        before = threading.active_count()
        socks = idle_connections(port, 300)
        # `before` may still count a handler of the requests above, just finishing.
        wait_until(lambda: threading.active_count() >= before + MAX_CONNECTIONS - 2, 5.0)
        assert threading.active_count() <= before + MAX_CONNECTIONS
    finally:
        for sock in socks:
            sock.close()
        wait_until(lambda: get(port, INSIDE, "prom:s3:cret")[0] == 200, 15.0,
                   message="scrapes work again once the idle clients are gone")
        exporter.close()


@pytest.fixture
def daemon(short_tmp: Path,
           standin_factory: StandInFactory) -> Iterator[tuple[ConfigDir, DaemonProcess]]:
    node = standin_factory("m1", tls=False)
    pw = short_tmp / "metrics.pw"
    pw.write_text("prom-pass\n")
    config = ConfigDir(short_tmp / "etc")
    config.write("05-metrics.toml", f"""\
        [metrics]
        allow = ["127.0.8.0/24"]
        user = "prom"
        password_file = "{pw}"
        """)
    config.cluster("cluster-0", free_port(BALANCER), {"m1": (node.host, node.port)})
    proc = DaemonProcess(config)
    try:
        proc.start()
        yield config, proc
    finally:
        proc.stop()


def test_daemon_metrics_are_guarded_and_bounded(daemon: tuple[ConfigDir, DaemonProcess],
                                                short_tmp: Path) -> None:
    config, proc = daemon
    port = config.metrics_port
    wait_until(lambda: get(port, INSIDE, "prom:prom-pass")[0] == 200, 5.0)
    assert_guarded(port, "prom-pass")
    assert proc.proc is not None
    daemon_proc = psutil.Process(proc.proc.pid)
    before = daemon_proc.num_threads()
    socks = idle_connections(port, 300)
    try:
        wait_until(lambda: daemon_proc.num_threads() >= before + MAX_CONNECTIONS - 1, 5.0)
        # /proc/PID/task: every thread of the daemon, whatever made it.
        tasks = len(os.listdir(f"/proc/{proc.proc.pid}/task"))
        assert tasks <= before + MAX_CONNECTIONS + 1, (before, tasks)
    finally:
        for sock in socks:
            sock.close()
    # A rotated password applies without a restart (the tick notices the file).
    (short_tmp / "metrics.pw").write_text("rotated\n")
    wait_until(lambda: get(port, INSIDE, "prom:rotated")[0] == 200, 15.0)
    assert get(port, INSIDE, "prom:prom-pass")[0] == 401


def test_state_dir_and_status_modes(daemon: tuple[ConfigDir, DaemonProcess]) -> None:
    config, _ = daemon
    assert stat.S_IMODE(config.state_dir.stat().st_mode) == 0o750
    assert stat.S_IMODE((config.state_dir / "status.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((config.state_dir / "stats-auth.cfg").stat().st_mode) == 0o600

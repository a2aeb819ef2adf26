"""The daemon speaks sd_notify to a real datagram socket, as systemd would see it."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, cli
from helpers import free_port, http_get, wait_until
from notify import NotifySocket

pytestmark = pytest.mark.usefixtures("haproxy_bin")


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


STARTS = 6


def test_every_endpoint_answers_the_instant_ready_arrives(
        short_tmp: Path, notify: NotifySocket, standin_factory: StandInFactory) -> None:
    """READY=1 means serving: balancer, stats page, both /metrics, a first health sample.

    Scraped once each, with no retry, right after READY: any endpoint that is
    still starting fails the test.
    """
    node = standin_factory("m1", tls=False)
    config = ConfigDir(short_tmp)
    port = free_port(BALANCER)
    config.cluster("cluster-0", port, {"m1": (node.host, node.port)})
    for start in range(STARTS):
        daemon = DaemonProcess(config, NOTIFY_SOCKET=str(notify.path))
        assert daemon.start_unwaited() is daemon
        try:
            notify.wait_ready(20.0, after=start)
            assert http_get(BALANCER, port, "/version")[0] == 200, f"start {start}: balancer"
            stats = f"start {start}: stats page"
            assert http_get(BALANCER, config.stats_port, "/stats")[0] == 200, stats
            assert http_get(BALANCER, config.stats_port, "/metrics")[0] == 200, stats
            status, body = http_get(BALANCER, config.metrics_port, "/metrics")
            assert status == 200 and b"haproxy_k8s_config_generation" in body, \
                f"start {start}: daemon metrics"
            result = cli("status", "--json", "--config-dir", str(config.root))
            assert result.returncode != 3, f"start {start}: {result.stdout}{result.stderr}"
            states = {n["state"] for c in json.loads(result.stdout)["clusters"]
                      for n in c["nodes"]}
            assert "UNKNOWN" not in states, f"start {start}: {states}"
        finally:
            daemon.stop()


def test_a_metrics_port_taken_is_an_error_naming_the_key(
        short_tmp: Path, standin_factory: StandInFactory) -> None:
    node = standin_factory("m1", tls=False)
    config = ConfigDir(short_tmp)
    config.cluster("cluster-0", free_port(BALANCER), {"m1": (node.host, node.port)})
    with socket.create_server((BALANCER, config.metrics_port)):
        daemon = DaemonProcess(config).start()
        try:
            result = cli("status", "--json", "--config-dir", str(config.root))
            error = json.loads(result.stdout)["daemon"]["last_error"]
            assert error is not None and error["message"].startswith("metrics.bind: ")
            assert f"{BALANCER}:{config.metrics_port}" in error["message"]
            assert "metrics.bind" in cli("status", "--config-dir", str(config.root)).stdout
        finally:
            daemon.stop()

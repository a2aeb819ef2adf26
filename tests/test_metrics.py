"""The daemon's own metrics: a collector over a snapshot, served on a real socket."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
from helpers import free_port, http_get, tcp_connect
from prometheus_client.parser import text_string_to_metric_families

from haproxy_k8s.config.model import Bind
from haproxy_k8s.daemon.metrics import (
    THREAD_NAME,
    MetricsExporter,
    MetricsSnapshot,
    snapshot_of,
)
from haproxy_k8s.daemon.state import DaemonState
from haproxy_k8s.daemon.status import (
    ClusterShape,
    HaproxyStatus,
    NodeShape,
    build,
)

HOST = "127.0.8.1"
NAMES = {
    "haproxy_k8s_reloads_total", "haproxy_k8s_config_generation",
    "haproxy_k8s_last_apply_timestamp_seconds", "haproxy_k8s_config_errors_total",
    "haproxy_k8s_haproxy_restarts_total", "haproxy_k8s_backend_servers",
    "haproxy_k8s_runtime_changes_total", "haproxy_k8s_haproxy_up",
    "haproxy_k8s_state_dir_errors_total",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by name and sorted labels, through prometheus_client's own parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_snapshot_of_daemon_state_and_status() -> None:
    state = DaemonState(pid=1, generation=7, reloads=3, failed_reloads=1, config_errors=2,
                        haproxy_restarts=1, runtime_changes=5,
                        applied_at="2026-01-02T03:04:05.67Z")
    shape = [ClusterShape("c0", (), (NodeShape("m1", "", None), NodeShape("m2", "", None)))]
    doc = build(state.status("/etc/haproxy-k8s"), HaproxyStatus(), shape,
                {("be_c0", "m1"): {"status": "UP"}, ("be_c0", "m2"): {"status": "DOWN"}})
    snap = snapshot_of(state, doc)
    assert (snap.generation, snap.reloads, snap.failed_reloads, snap.config_errors,
            snap.haproxy_restarts, snap.runtime_changes, snap.haproxy_up) == (7, 3, 1, 2, 1, 5,
                                                                               True)
    assert snap.last_apply_unix == pytest.approx(1767323045.67)
    assert ("c0", "UP", 1) in snap.backend_servers and ("c0", "DOWN", 1) in snap.backend_servers
    assert ("c0", "MAINT", 0) in snap.backend_servers


def test_exposition_parses_and_carries_every_name() -> None:
    exporter = MetricsExporter()
    exporter.publish(MetricsSnapshot(generation=4, reloads=2, failed_reloads=1,
                                     last_apply_unix=1767323045.5, runtime_changes=6,
                                     haproxy_up=True,
                                     backend_servers=(("c0", "UP", 2), ("c0", "DOWN", 1))))
    values = samples(exporter.exposition().decode())
    assert {name for name, _ in values} == NAMES
    assert values[("haproxy_k8s_reloads_total", (("result", "success"),))] == 2
    assert values[("haproxy_k8s_reloads_total", (("result", "failure"),))] == 1
    assert values[("haproxy_k8s_config_generation", ())] == 4
    assert values[("haproxy_k8s_runtime_changes_total", ())] == 6
    assert values[("haproxy_k8s_last_apply_timestamp_seconds", ())] == 1767323045.5
    assert values[("haproxy_k8s_backend_servers", (("cluster", "c0"), ("state", "DOWN")))] == 1


def test_served_on_the_bind_follows_snapshots_and_rebinds() -> None:
    exporter = MetricsExporter()
    first = Bind(HOST, free_port(HOST))
    try:
        exporter.serve(first)
        assert exporter.serving
        exporter.publish(MetricsSnapshot(generation=1))
        status, body = http_get(HOST, first.port, "/metrics")
        assert status == 200
        assert samples(body.decode())[("haproxy_k8s_config_generation", ())] == 1
        exporter.publish(MetricsSnapshot(generation=2))
        assert samples(http_get(HOST, first.port, "/metrics")[1].decode())[
            ("haproxy_k8s_config_generation", ())] == 2
        exporter.serve(first)  # the same bind: nothing to do
        second = Bind(HOST, free_port(HOST))
        exporter.serve(second)
        assert not tcp_connect(HOST, first.port)
        assert http_get(HOST, second.port, "/metrics")[0] == 200
    finally:
        exporter.close()
    assert not exporter.serving
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]


def test_a_taken_port_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    exporter = MetricsExporter()
    with socket.socket() as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()
        with caplog.at_level(logging.ERROR, logger="haproxy_k8s.daemon.metrics"):
            exporter.serve(Bind(HOST, squatter.getsockname()[1]))
    assert not exporter.serving
    assert "cannot serve metrics" in caplog.text
    exporter.serve(None)
    exporter.close()

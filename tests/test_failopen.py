"""Fail-open: while no node of a cluster is UP, clients are served by its enabled nodes.

Real daemon, HAProxy and TLS stand-ins whose /readyz the test flips to 500.
"""

from __future__ import annotations

import collections
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, cli
from helpers import free_port, node_of, wait_until

from haproxy_k8s.daemon.publisher import FAIL_OPEN_DETAIL, fail_open_news
from haproxy_k8s.demo.standin import StandIn

pytestmark = pytest.mark.usefixtures("haproxy_bin")


def spread(port: int, count: int = 24) -> collections.Counter[str]:
    return collections.Counter(node_of(port) for _ in range(count))


class Cluster:
    def __init__(self, config: ConfigDir, daemon: DaemonProcess, port: int,
                 nodes: list[StandIn]) -> None:
        self.config, self.daemon, self.port, self.nodes = config, daemon, port, nodes

    def states(self) -> dict[str, str]:
        clusters = self.daemon.status().get("clusters") or [{}]
        return {n["name"]: n["state"] for n in clusters[0].get("nodes", [])}

    def wait_states(self, want: dict[str, str]) -> None:
        wait_until(lambda: all(self.states().get(k) == v for k, v in want.items()), 10,
                   message=f"states {want} (have {self.states()})")

    def cluster_status(self) -> dict[str, object]:
        clusters: list[dict[str, object]] = self.daemon.status()["clusters"]
        return clusters[0]


def start(root: Path, factory: StandInFactory, fail_open: bool,
          backup: str | None = None) -> Cluster:
    config = ConfigDir(root, check="https", debounce="50ms")
    nodes = [factory(f"m{i}") for i in (1, 2, 3)]
    port = free_port(BALANCER)
    path = config.cluster("cluster-0", port, {n.name: (n.host, n.port) for n in nodes})
    if not fail_open:
        path.write_text(path.read_text().replace("[clusters.cluster-0]\n",
                                                 "[clusters.cluster-0]\nfail_open = false\n"))
    if backup is not None:
        config.write("20-backup.toml", f"[clusters.cluster-0.nodes.{backup}]\nbackup = true\n")
    cluster = Cluster(config, DaemonProcess(config), port, nodes)
    cluster.daemon.start()
    return cluster


@pytest.fixture
def failing_open(short_tmp: Path, standin_factory: StandInFactory) -> Iterator[Cluster]:
    cluster = start(short_tmp, standin_factory, fail_open=True)
    try:
        yield cluster
    finally:
        cluster.daemon.stop()


def metric(cluster: Cluster, name: str) -> str:
    url = f"http://{BALANCER}:{cluster.config.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text: str = reply.read().decode()
    return next((line for line in text.splitlines() if line.startswith(name)), "")


def test_every_check_failing_still_serves_then_only_the_recovered_node(
        failing_open: Cluster) -> None:
    c = failing_open
    for node in c.nodes:
        node.readyz_status = 500
    c.wait_states({"m1": "DOWN", "m2": "DOWN", "m3": "DOWN"})
    counts = spread(c.port)
    assert "" not in counts and len(counts) >= 2, counts  # served, spread over nodes
    assert c.cluster_status()["fail_open_active"] is True
    done = cli("status", "--config-dir", str(c.config.root))
    assert done.returncode == 2 and "FAIL-OPEN" in done.stdout, done.stdout
    wait_until(lambda: metric(c, "haproxy_k8s_cluster_fail_open{")
               .endswith(" 1.0"), 10, message="the fail-open metric")
    assert c.daemon.log_text().count("cluster-0: no node UP; FAIL-OPEN") == 1
    # One node recovers: only healthy nodes get new connections again.
    c.nodes[1].readyz_status = 200
    c.wait_states({"m2": "UP"})
    assert spread(c.port) == {"m2": 24}
    assert c.cluster_status()["fail_open_active"] is False
    assert "cluster-0: no longer failing open" in c.daemon.log_text()


def test_nodes_in_maintenance_stay_out_while_failing_open(failing_open: Cluster) -> None:
    c = failing_open
    done = cli("maint", "cluster-0/m3", "--config-dir", str(c.config.root))
    assert done.returncode == 0, done.stderr
    for node in c.nodes:
        node.readyz_status = 500
    c.wait_states({"m1": "DOWN", "m2": "DOWN", "m3": "MAINT"})
    counts = spread(c.port)
    assert set(counts) == {"m1", "m2"}, counts


def test_a_cluster_with_a_backup_node_fails_open_through_a_backend_of_twins(
        short_tmp: Path, standin_factory: StandInFactory) -> None:
    """Its backup node serves alone while the others are DOWN; with every node
    DOWN, all serve (the `fo_` backend: HAProxy's backups would mix the two)."""
    c = start(short_tmp, standin_factory, fail_open=True, backup="m3")
    try:
        text = (c.config.state_dir / "haproxy.cfg").read_text()
        assert "backend fo_cluster-0 " in text and " fo_m1 " not in text
        ready = f"http://{BALANCER}:{c.config.stats_port}/healthz"
        c.nodes[0].readyz_status = c.nodes[1].readyz_status = 500
        c.wait_states({"m1": "DOWN", "m2": "DOWN", "m3": "UP"})
        assert spread(c.port) == {"m3": 24}
        assert urllib.request.urlopen(ready, timeout=5).status == 200
        c.nodes[2].readyz_status = 500
        c.wait_states({"m3": "DOWN"})
        counts = spread(c.port)
        assert "" not in counts and set(counts) <= {"m1", "m2", "m3"} and len(counts) >= 2
        assert c.cluster_status()["fail_open_active"] is True
        with pytest.raises(urllib.error.HTTPError) as down:
            urllib.request.urlopen(ready, timeout=5)
        assert down.value.code == 503
    finally:
        c.daemon.stop()


def test_failing_open_through_backup_twins_is_down_for_healthz(failing_open: Cluster) -> None:
    """/healthz tells failing open from serving by be_conn_free() (the twins have
    a maxconn, the nodes none): 200 with one node UP, 503 with none."""
    c = failing_open
    text = (c.config.state_dir / "haproxy.cfg").read_text()
    assert "backend fo_cluster-0 " not in text and " fo_m1 " in text
    ready = f"http://{BALANCER}:{c.config.stats_port}/healthz"
    for node in c.nodes[1:]:
        node.readyz_status = 500
    c.wait_states({"m1": "UP", "m2": "DOWN", "m3": "DOWN"})
    assert urllib.request.urlopen(ready, timeout=5).status == 200
    c.nodes[0].readyz_status = 500
    c.wait_states({"m1": "DOWN"})
    assert len(spread(c.port)) >= 2  # failing open
    with pytest.raises(urllib.error.HTTPError) as down:
        urllib.request.urlopen(ready, timeout=5)
    assert down.value.code == 503


def test_without_fail_open_clients_are_refused(short_tmp: Path,
                                               standin_factory: StandInFactory) -> None:
    c = start(short_tmp, standin_factory, fail_open=False)
    try:
        for node in c.nodes:
            node.readyz_status = 500
        c.wait_states({"m1": "DOWN", "m2": "DOWN", "m3": "DOWN"})
        assert spread(c.port, 5) == {"": 5}
        assert c.cluster_status()["fail_open_active"] is False
    finally:
        c.daemon.stop()


def test_many_clusters_failing_open_at_once_are_one_line_each_way() -> None:
    assert fail_open_news(["c0"], ["c1"]) == [
        "cluster c0: no node UP; FAIL-OPEN: new connections go to every enabled node, "
        "checks ignored", "cluster c1: no longer failing open"]
    many = [f"c{i:04d}" for i in range(FAIL_OPEN_DETAIL + 1)]
    assert fail_open_news(many, []) == [
        f"{len(many)} clusters: no node UP; FAIL-OPEN: c0000, c0001, c0002, c0003, c0004, "
        f"c0005, c0006, c0007, c0008, c0009 and {len(many) - 10} more"]
    assert fail_open_news(["c9"], many) == [
        "1 cluster: no node UP; FAIL-OPEN: c9",
        f"{len(many)} clusters: no longer failing open: c0000, c0001, c0002, c0003, c0004, "
        f"c0005, c0006, c0007, c0008, c0009 and {len(many) - 10} more"]

"""Faults and mistakes that must never cost live traffic or make `status` lie.

Each test reproduces one case of the faults issue with the real daemon and HAProxy.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess
from helpers import free_port, version_over_tls, wait_until
from notify import NotifySocket

from haproxy_k8s.demo.standin import StandIn
from haproxy_k8s.haproxy.runtime import RuntimeClient
from testkit.configdir import cluster_toml
from testkit.load import Load

pytestmark = pytest.mark.usefixtures("haproxy_bin")

MANY = 1500
WATCHDOG_S = 4.0


def _big_cluster(config: ConfigDir, port: int, seed: tuple[str, int], count: int) -> None:
    """One real node and `count` that refuse (127.0.9.x, a closed port), rarely checked."""
    lines = ["[clusters.big]", f'bind = ["{BALANCER}:{port}"]', 'check_interval = "30s"',
             'down_interval = "30s"', 'drain_grace = "0s"',
             "[clusters.big.nodes.seed]", f'address = "{seed[0]}"', f"port = {seed[1]}"]
    for i in range(count):
        lines += [f"[clusters.big.nodes.n{i}]", f'address = "127.0.9.{i % 200 + 1}"',
                  f"port = {20000 + i}"]
    config.write("10-big.toml", "\n".join(lines) + "\n")


def test_removing_many_nodes_never_starves_the_watchdog(
        short_tmp: Path, notify: NotifySocket, standin_factory: StandInFactory) -> None:
    seed = standin_factory("seed", tls=False)
    config = ConfigDir(short_tmp)
    _big_cluster(config, free_port(BALANCER), (seed.host, seed.port), MANY)
    daemon = DaemonProcess(config, NOTIFY_SOCKET=str(notify.path),
                           WATCHDOG_USEC=str(int(WATCHDOG_S * 1_000_000))).start(timeout=60)
    try:
        admin = RuntimeClient(config.state_dir / "admin.sock")
        reloads = daemon.status()["haproxy"]["reloads"]
        since = time.monotonic()
        _big_cluster(config, int(daemon.status()["clusters"][0]["bind"][0].rsplit(":", 1)[1]),
                     (seed.host, seed.port), 0)

        def servers_left() -> int:
            return sum(1 for (backend, name) in admin.show_stat()
                       if backend == "be_big" and name not in ("FRONTEND", "BACKEND"))

        wait_until(lambda: servers_left() == 1, 60.0, interval=0.2,
                   message="every removed node deleted")
        gaps = notify.watchdog_gaps(since)
        assert gaps and max(gaps) < WATCHDOG_S, f"watchdog gaps {max(gaps):.1f}s"
        assert daemon.status()["haproxy"]["reloads"] == reloads  # runtime only
    finally:
        daemon.stop()


def _two_clusters(config: ConfigDir, nodes: list[StandIn]) -> tuple[int, int]:
    port_a, port_b = free_port(BALANCER), free_port(BALANCER)
    config.cluster("cluster-a", port_a, {"m1": (nodes[0].host, nodes[0].port)})
    config.cluster("cluster-b", port_b, {"m2": (nodes[1].host, nodes[1].port)})
    return port_a, port_b


def _slow_save(path: Path, first: str, rest: str, pause: float) -> None:
    """Save as a slow editor or a two-step tool does: truncate, write part, wait, finish."""
    with path.open("w") as f:
        f.write(first)
        f.flush()
        time.sleep(pause)  # the save in progress that the daemon must not apply
        f.write(rest)


@pytest.mark.parametrize("split", ["truncated", "second-cluster-later"])
def test_a_slow_save_never_drops_the_cluster(short_tmp: Path, split: str,
                                            standin_factory: StandInFactory) -> None:
    """An editor truncates and writes after a pause; a tool writes one cluster, then the next."""
    nodes = [standin_factory("m1"), standin_factory("m2"), standin_factory("m3")]
    config = ConfigDir(short_tmp, debounce="100ms")
    _two_clusters(config, nodes)
    path = config.conf_d / "10-cluster-b.toml"
    port_c = free_port(BALANCER)
    text = path.read_text() + cluster_toml("cluster-c", f"{BALANCER}:{port_c}",
                                           {"m3": (nodes[2].host, nodes[2].port)})
    config.write(path.name, text)
    daemon = DaemonProcess(config).start()
    try:
        cut = 0 if split == "truncated" else text.index("[clusters.cluster-c]")
        generation = daemon.generation()
        with Load(version_over_tls(port_c)) as load:
            load.wait_requests(20)
            writer = threading.Thread(target=_slow_save,
                                      args=(path, text[:cut], text[cut:], 0.8))
            writer.start()
            held = wait_until(lambda: daemon.status()["daemon"].get("held"), 5.0,
                              message="the partial save is held")
            writer.join()
            load.wait_requests(load.result.ok + 50, timeout=10.0)
        result = load.stop()
        assert result.failures == [], result.failures[:5]
        assert held["reasons"], held
        wait_until(lambda: daemon.status()["daemon"].get("held") is None, 5.0,
                   message="the hold ends once the file is whole again")
        assert daemon.generation() == generation  # nothing was ever taken away
    finally:
        daemon.stop()


def test_a_removal_that_holds_is_applied_after_the_hold_down(
        short_tmp: Path, standin_factory: StandInFactory) -> None:
    nodes = [standin_factory("m1"), standin_factory("m2")]
    config = ConfigDir(short_tmp)
    _two_clusters(config, nodes)
    daemon = DaemonProcess(config).start()
    try:
        (config.conf_d / "10-cluster-b.toml").unlink()
        wait_until(lambda: daemon.status()["daemon"].get("held"), 5.0)
        wait_until(lambda: [c["name"] for c in daemon.status()["clusters"]] == ["cluster-a"],
                   10.0, message="the removal applies once it held")
        assert daemon.status()["daemon"]["held"] is None
    finally:
        daemon.stop()

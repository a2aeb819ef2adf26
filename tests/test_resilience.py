"""Faults and mistakes that must never cost live traffic or make `status` lie.

Each test reproduces one case of the faults issue with the real daemon and HAProxy.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess
from helpers import free_port, wait_until
from notify import NotifySocket

from haproxy_k8s.haproxy.runtime import RuntimeClient

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

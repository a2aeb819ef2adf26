"""A node added through the runtime API serves only once its first check passed, and soon.

The cluster keeps HAProxy's default check timing (inter 2s, downinter 5s, rise 2, fall 3,
slowstart 30s) so that "soon" means the first check came early, not a fast interval.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, cli
from helpers import free_port, node_of, wait_until

from haproxy_k8s.demo.standin import StandIn

pytestmark = pytest.mark.usefixtures("haproxy_bin")

# Back to the built-in defaults (the test harness's main file sets quick checks).
DEFAULT_CHECKS = """\
check_interval = "2s"
fast_interval = "500ms"
down_interval = "5s"
fall = 3
rise = 2
slowstart = "30s"
"""


def node_toml(node: StandIn) -> str:
    return (f"[clusters.cluster-0.nodes.{node.name}]\naddress = \"{node.host}\"\n"
            f"port = {node.port}\n")


@pytest.fixture
def cluster(short_tmp: Path, standin_factory: StandInFactory
            ) -> Iterator[tuple[ConfigDir, DaemonProcess, int]]:
    config = ConfigDir(short_tmp, check="https", debounce="50ms")
    base = standin_factory("base")
    port = free_port(BALANCER)
    path = config.cluster("cluster-0", port, {"base": (base.host, base.port)})
    path.write_text(path.read_text().replace("[clusters.cluster-0]\n",
                                             "[clusters.cluster-0]\n" + DEFAULT_CHECKS, 1))
    daemon = DaemonProcess(config)
    try:
        daemon.start()
        yield config, daemon, port
    finally:
        daemon.stop()


def node_state(daemon: DaemonProcess, name: str) -> str:
    nodes = daemon.status()["clusters"][0]["nodes"]
    return str(next((n["state"] for n in nodes if n["name"] == name), ""))


def test_a_healthy_new_node_serves_within_a_second(
        cluster: tuple[ConfigDir, DaemonProcess, int], standin_factory: StandInFactory) -> None:
    config, daemon, port = cluster
    new = standin_factory("new")
    t0 = config.write_timed("20-new.toml", node_toml(new))
    wait_until(lambda: node_of(port) == "new", 5, 0.005, message="a client on the new node")
    # Before max-spread-checks its first check came after downinter (5 s).
    assert time.monotonic() - t0 < 1.5
    wait_until(lambda: node_state(daemon, "new") == "UP", 5, message="new is UP")
    assert daemon.status()["daemon"]["last_apply"]["action"] == "runtime"


def test_a_failing_new_node_never_gets_a_client_and_is_not_up(
        cluster: tuple[ConfigDir, DaemonProcess, int], standin_factory: StandInFactory) -> None:
    config, daemon, port = cluster
    bad = standin_factory("bad")
    bad.readyz_status = 500
    config.write("20-bad.toml", node_toml(bad))
    wait_until(lambda: node_state(daemon, "bad") in ("NOLB", "DOWN"), 5,
               message="bad is listed, not UP")
    done = cli("status", "--config-dir", str(config.root))
    assert done.returncode == 1, done.stdout  # degraded: a node is not UP
    deadline = time.monotonic() + 2.5  # past the first check and the next (fastinter)
    answers = set()
    while time.monotonic() < deadline:
        answers.add(node_of(port))
    assert answers == {"base"}
    assert bad.requests["/version"] == 0 and bad.requests["/readyz"] >= 2
    wait_until(lambda: node_state(daemon, "bad") == "DOWN", 5, message="bad goes DOWN")

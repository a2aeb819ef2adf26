"""Several clusters on one address, routed by TLS SNI: real daemon, HAProxy, curl, kubectl.

Two clusters share 127.0.8.1:PORT; each has one TLS stand-in that answers /version
with its node name. Clients pick a cluster by the server name they send.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, cli
from helpers import free_port, require_tool, wait_until
from helpers import node_of as node_without_sni

from haproxy_k8s.demo.standin import StandIn

pytestmark = pytest.mark.usefixtures("haproxy_bin")

INSPECT_DELAY = 1.0


class Shared:
    def __init__(self, config: ConfigDir, daemon: DaemonProcess, port: int,
                 nodes: dict[str, StandIn]) -> None:
        self.config, self.daemon, self.port, self.nodes = config, daemon, port, nodes

    def write(self, c0_sni: str, c1_sni: str, default: bool = True) -> None:
        """Both clusters on the shared bind; `cluster-0` is the default when `default`."""
        a, b = self.nodes["a1"], self.nodes["b1"]
        bind = f"{BALANCER}:{self.port}"
        self.config.write("10-clusters.toml", f"""\
            [clusters.cluster-0]
            bind = ["{bind}"]
            sni = {c0_sni}
            sni_default = {"true" if default else "false"}
            # The shared frontend waits as long as its most patient cluster.
            sni_inspect_delay = "{int(INSPECT_DELAY * 1000)}ms"
            [clusters.cluster-0.nodes.a1]
            address = "{a.host}"
            port = {a.port}
            [clusters.cluster-1]
            bind = ["{bind}"]
            sni = {c1_sni}
            sni_inspect_delay = "{int(INSPECT_DELAY * 1000)}ms"
            [clusters.cluster-1.nodes.b1]
            address = "{b.host}"
            port = {b.port}
            """)


    def _haproxy_reloads(self) -> int:
        return int(self.daemon.status()["haproxy"]["reloads"] or 0)

    def applied(self, generation: int) -> dict[str, object]:
        wait_until(lambda: self.daemon.generation() > generation, 10,
                   message="the edit applied")
        last: dict[str, object] = self.daemon.status()["daemon"]["last_apply"]
        return last


def node_by_curl(port: int, name: str) -> str:
    """The node a `curl --resolve` for `name` reaches, or "" when refused."""
    curl = require_tool("curl", "apt-get install curl")
    done = subprocess.run([curl, "-sk", "--max-time", "5", "--resolve",
                           f"{name}:{port}:{BALANCER}", f"https://{name}:{port}/version"],
                          capture_output=True, text=True, timeout=10, check=False)
    return str(json.loads(done.stdout)["node"]) if done.returncode == 0 else ""


def node_by_kubectl(port: int, name: str, home: Path) -> str:
    kubectl = require_tool("kubectl", "install kubectl")
    done = subprocess.run([kubectl, "--server", f"https://{BALANCER}:{port}",
                           "--tls-server-name", name, "--insecure-skip-tls-verify",
                           # Any credentials: without them kubectl prompts for a user.
                           "--token", "test",
                           "get", "--raw", "/version"], capture_output=True, text=True,
                          timeout=30, check=False,
                          env={**os.environ, "HOME": str(home),
                               "KUBECONFIG": str(home / "none")})
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["node"])


@pytest.fixture
def shared(short_tmp: Path, standin_factory: StandInFactory) -> Iterator[Shared]:
    config = ConfigDir(short_tmp, check="https", debounce="50ms")
    nodes = {"a1": standin_factory("a1"), "b1": standin_factory("b1")}
    setup = Shared(config, DaemonProcess(config), free_port(BALANCER), nodes)
    setup.write('["cluster-0.example"]', '["cluster-1.example", "*.c1.example"]')
    try:
        setup.daemon.start()
        yield setup
    finally:
        setup.daemon.stop()


def test_clients_reach_the_cluster_they_name(shared: Shared, short_tmp: Path) -> None:
    port = shared.port
    assert node_by_curl(port, "cluster-0.example") == "a1"
    assert node_by_curl(port, "cluster-1.example") == "b1"
    assert node_by_curl(port, "x.c1.example") == "b1"  # the wildcard, one label
    assert node_by_curl(port, "x.y.c1.example") == "a1"  # two labels: unknown -> default
    assert node_by_kubectl(port, "cluster-1.example", short_tmp) == "b1"
    assert node_by_kubectl(port, "cluster-0.example", short_tmp) == "a1"
    assert node_without_sni(port) == "a1"  # no SNI -> the sni_default cluster
    clusters = {c["name"]: c for c in shared.daemon.status()["clusters"]}
    assert clusters["cluster-1"]["sni"] == ["cluster-1.example", "*.c1.example"]
    done = cli("status", "--config-dir", str(shared.config.root))
    assert "cluster-1.example,*.c1.example" in done.stdout, done.stdout


def test_hostname_changes_apply_without_a_reload(shared: Shared) -> None:
    port = shared.port
    reloads = shared._haproxy_reloads()
    generation = shared.daemon.generation()
    # Re-point cluster-0.example to cluster-1, add a name, drop the wildcard.
    shared.write('["zero.example"]', '["cluster-1.example", "cluster-0.example"]')
    last = shared.applied(generation)
    assert last["action"] == "runtime", last
    assert node_by_curl(port, "cluster-0.example") == "b1"
    assert node_by_curl(port, "zero.example") == "a1"
    assert node_by_curl(port, "x.c1.example") == "a1"  # wildcard gone: the default
    assert shared._haproxy_reloads() == reloads
    # The map file agrees, so a reload keeps the same routing.
    maps = list(shared.config.state_dir.glob("sni-*.map"))
    assert len(maps) == 1 and "cluster-0.example be_cluster-1" in maps[0].read_text()


def test_without_a_default_no_or_unknown_sni_is_refused(shared: Shared) -> None:
    generation = shared.daemon.generation()
    shared.write('["cluster-0.example"]', '["cluster-1.example"]', default=False)
    assert shared.applied(generation)["action"] == "reload"
    assert node_without_sni(shared.port) == ""
    assert node_by_curl(shared.port, "other.example") == ""
    assert node_by_curl(shared.port, "cluster-0.example") == "a1"


def test_a_silent_connection_is_closed_after_the_inspect_delay(shared: Shared) -> None:
    with socket.create_connection((BALANCER, shared.port), timeout=10) as sock:
        start = time.monotonic()
        assert sock.recv(1) == b""  # closed by the balancer, having sent nothing
        waited = time.monotonic() - start
    assert INSPECT_DELAY * 0.8 <= waited <= INSPECT_DELAY + 2.0, waited


def test_overlapping_hostnames_are_refused_and_the_balancer_keeps_serving(
        shared: Shared) -> None:
    generation = shared.daemon.generation()
    shared.config.write("20-overlap.toml", """\
        [clusters.cluster-1]
        sni = ["cluster-1.example", "cluster-0.example"]
        """)
    wait_until(lambda: shared.daemon.status()["daemon"].get("last_error"), 10,
               message="the overlap reported")
    error = shared.daemon.status()["daemon"]["last_error"]
    assert error["file"].endswith("20-overlap.toml"), error
    assert "10-clusters.toml" in error["message"], error
    assert shared.daemon.generation() == generation
    assert node_by_curl(shared.port, "cluster-0.example") == "a1"

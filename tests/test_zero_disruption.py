"""Zero-disruption operations under a real client load: runtime membership changes,
drain/ready, structural reloads and daemon crashes must cost no client connection."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, cli
from helpers import free_port, https_get, version_over_tls, wait_until

from haproxy_k8s.demo.standin import StandIn
from haproxy_k8s.haproxy.sockets import AdminSocket
from testkit.load import Load

pytestmark = pytest.mark.usefixtures("haproxy_bin")


class Setup:
    def __init__(self, config: ConfigDir, daemon: DaemonProcess, port: int,
                 nodes: list[StandIn]) -> None:
        self.config, self.daemon, self.port, self.nodes = config, daemon, port, nodes

    def node_of(self) -> str:
        status, body = https_get(BALANCER, self.port, "/version")
        assert status == 200
        return str(json.loads(body)["node"])

    def reloads(self) -> int:
        return int(self.daemon.status()["haproxy"]["reloads"])

    def applied(self, generation: int, timeout: float = 5.0) -> None:
        wait_until(lambda: self.daemon.generation() > generation, timeout,
                   message=f"apply after generation {generation}")

    def server_row(self, node: str) -> dict[str, str]:
        admin = AdminSocket(self.config.state_dir / "admin.sock")
        for line in admin.command("show stat").splitlines()[1:]:
            fields = line.split(",")
            if fields[:2] == ["be_cluster-0", node]:
                return {"status": fields[17], "scur": fields[4]}
        raise AssertionError(f"no server {node}")

    def cli(self, *args: str) -> tuple[int, str]:
        result = cli(*args, "--config-dir", str(self.config.root))
        return result.returncode, result.stdout + result.stderr


@pytest.fixture
def setup(short_tmp: Path, standin_factory: StandInFactory) -> Iterator[Setup]:
    nodes = [standin_factory(f"m{i}") for i in (1, 2, 3)]
    config = ConfigDir(short_tmp, check="https")
    port = free_port(BALANCER)
    config.cluster("cluster-0", port, {n.name: (n.host, n.port) for n in nodes})
    daemon = DaemonProcess(config).start()
    try:
        yield Setup(config, daemon, port, nodes)
    finally:
        daemon.stop()


def add_node(s: Setup, node: StandIn, file: str = "20-extra.toml") -> None:
    s.config.write(file, f"""\
        [clusters.cluster-0.nodes.{node.name}]
        address = "{node.host}"
        port = {node.port}
        """)


def test_node_add_and_remove_without_reload(setup: Setup,
                                            standin_factory: StandInFactory) -> None:
    s = setup
    m4 = standin_factory("m4")
    reloads, generation = s.reloads(), s.daemon.generation()
    with Load(version_over_tls(s.port)) as load:
        load.wait_requests(20)
        add_node(s, m4)
        s.applied(generation)
        wait_until(lambda: m4.requests["/version"] > 0, 5.0, message="m4 serves clients")
        generation = s.daemon.generation()
        (s.config.conf_d / "20-extra.toml").unlink()
        s.applied(generation)
        wait_until(lambda: s.config.status_file()["clusters"][0]["total"] == 3, 5.0)
        served = m4.requests["/version"]
        load.wait_requests(load.result.ok + 40)
    result = load.stop()
    assert result.failures == [], result.failures[:5]
    assert m4.requests["/version"] == served  # no new client reached the removed node
    assert s.reloads() == reloads
    status = s.daemon.status()
    assert status["daemon"]["runtime_changes"] == 2
    assert status["daemon"]["last_apply"]["action"] == "runtime"
    # The file follows the live change once validated (apply/deferred.py).
    wait_until(lambda: "server m4" not in (s.config.state_dir / "haproxy.cfg").read_text(),
               5.0, message="the validated file is published")


def test_node_readdress_at_runtime(setup: Setup, standin_factory: StandInFactory) -> None:
    s = setup
    moved = standin_factory("m3b", host="127.0.8.12")
    reloads, generation = s.reloads(), s.daemon.generation()
    s.config.cluster("cluster-0", s.port, {
        **{n.name: (n.host, n.port) for n in s.nodes[:2]}, "m3": (moved.host, moved.port)})
    s.applied(generation)
    wait_until(lambda: "m3b" in {s.node_of() for _ in range(6)}, 5.0,
               message="traffic reaches m3's new address")
    assert s.reloads() == reloads


def test_structural_reloads_under_load_lose_nothing(setup: Setup) -> None:
    s = setup
    reloads = s.reloads()
    with Load(version_over_tls(s.port)) as load:
        load.wait_requests(20)
        for i in range(30):
            generation = s.daemon.generation()
            # A different server-fin timeout changes the rendered config: a real reload.
            s.config.write("50-toggle.toml", f'[defaults]\nserver_fin_timeout = "{40 + i}s"\n')
            s.applied(generation)
        load.wait_requests(load.result.ok + 20)
    result = load.stop()
    assert s.reloads() >= reloads + 30
    assert result.failures == [], result.failures[:5]
    assert result.ok > 100


def test_drain_ready_under_load_and_across_reload(setup: Setup) -> None:
    s = setup
    with Load(version_over_tls(s.port)) as load:
        load.wait_requests(20)
        code, out = s.cli("drain", "cluster-0/m1", "--wait", "--timeout", "20s")
        assert code == 0, out
        assert s.server_row("m1")["status"].startswith("DRAIN")
        served = s.nodes[0].requests["/version"]
        generation = s.daemon.generation()
        s.config.write("50-toggle.toml", '[defaults]\nserver_fin_timeout = "31s"\n')
        s.applied(generation)  # a structural reload keeps the drain
        assert s.server_row("m1")["status"].startswith("DRAIN")
        load.wait_requests(load.result.ok + 40)
        assert s.nodes[0].requests["/version"] == served
        wait_until(lambda: cli("status", "--json", "--config-dir", str(s.config.root)
                               ).stdout.count('"DRAIN"') == 1, 5.0)
        code, out = s.cli("ready", "cluster-0/m1")
        assert code == 0, out
        wait_until(lambda: s.nodes[0].requests["/version"] > served, 5.0)
    result = load.stop()
    assert result.failures == [], result.failures[:5]


def test_drain_survives_daemon_restart(setup: Setup) -> None:
    s = setup
    assert s.cli("maint", "cluster-0/m2")[0] == 0
    s.daemon.stop()  # stops HAProxy too
    s.daemon.start()
    wait_until(lambda: s.server_row("m2")["status"].startswith("MAINT"), 5.0)


def test_daemon_sigkill_leaves_traffic_and_restart_adopts(setup: Setup) -> None:
    s = setup
    haproxy = s.daemon.haproxy_pid
    with Load(version_over_tls(s.port)) as load:
        load.wait_requests(20)
        s.daemon.signal(signal.SIGKILL)
        assert s.daemon.proc is not None
        s.daemon.proc.wait(timeout=10)
        load.wait_requests(load.result.ok + 40)
        assert s.daemon.haproxy_pid == haproxy and haproxy is not None
        os.kill(haproxy, 0)  # still running without its daemon
        s.daemon.start()
        load.wait_requests(load.result.ok + 20)
    result = load.stop()
    assert result.failures == [], result.failures[:5]
    assert s.daemon.haproxy_pid == haproxy  # adopted, not restarted
    assert s.daemon.status()["haproxy"]["pid"] == haproxy
    assert "adopted running haproxy master" in s.daemon.log_text()


def test_port_change_applies_despite_state_file(setup: Setup,
                                                standin_factory: StandInFactory) -> None:
    """HAProxy's state file overrides a configured port; a reload must not undo the change."""
    s = setup
    moved = standin_factory("m1b", host=s.nodes[0].host)
    generation = s.daemon.generation()
    # A port change plus a structural change in one apply: this one goes through a reload.
    s.config.write("50-toggle.toml", '[defaults]\nserver_fin_timeout = "33s"\n')
    s.config.cluster("cluster-0", s.port, {
        "m1": (moved.host, moved.port), **{n.name: (n.host, n.port) for n in s.nodes[1:]}})
    s.applied(generation)
    wait_until(lambda: s.daemon.status()["daemon"]["last_apply"]["action"] == "reload", 5.0)
    wait_until(lambda: "m1b" in {s.node_of() for _ in range(6)}, 5.0,
               message="traffic reaches m1's new port after the reload")


def test_a_reload_carries_the_servers_state_and_the_checks_read_none(setup: Setup) -> None:
    """A node DOWN before a reload starts DOWN in the new worker (the state file), and
    between reloads the file says "no saved state", so `haproxy -c` reads none."""
    s = setup
    state_file = s.config.state_dir / "server-state"
    s.nodes[2].stop()
    wait_until(lambda: s.server_row("m3")["status"] == "DOWN", 10.0, message="m3 DOWN")
    generation = s.daemon.generation()
    s.config.write("50-toggle.toml", '[defaults]\nserver_fin_timeout = "33s"\n')
    s.applied(generation)
    assert s.daemon.status()["daemon"]["last_apply"]["action"] == "reload"
    out = (s.config.state_dir / "haproxy.out").read_text(errors="replace")
    assert "be_cluster-0/m3 is DOWN, changed from server-state after a reload" in out, out
    assert state_file.read_text() == "1\n"
    assert not (s.config.state_dir / "server-state.next").exists()

"""A drop-in whose bind is taken (or not an address of this host) is refused before
HAProxy tries it: HAProxy 2.6 pauses every listener while it retries a failed bind."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, cli
from helpers import free_port, version_over_tls, wait_until

from haproxy_k8s.config.model import Bind, Cluster, Config, Node, StatsSettings
from haproxy_k8s.haproxy import sockdiag
from haproxy_k8s.haproxy.binds import find_problems, parse_binds
from haproxy_k8s.haproxy.probe import listening_sockets
from haproxy_k8s.haproxy.render import render
from testkit.load import Load

pytestmark = pytest.mark.usefixtures("haproxy_bin")


@pytest.fixture
def serving(short_tmp: Path,
            standin_factory: StandInFactory) -> Iterator[tuple[ConfigDir, DaemonProcess, int]]:
    nodes = [standin_factory(f"m{i}") for i in (1, 2)]
    config = ConfigDir(short_tmp, check="https")
    port = free_port(BALANCER)
    config.cluster("cluster-a", port, {n.name: (n.host, n.port) for n in nodes})
    daemon = DaemonProcess(config).start()
    try:
        yield config, daemon, port
    finally:
        daemon.stop()


def test_taken_port_is_refused_without_touching_traffic(
        serving: tuple[ConfigDir, DaemonProcess, int]) -> None:
    config, daemon, port = serving
    generation = daemon.generation()
    reloads = daemon.status()["haproxy"]["reloads"]
    with socket.socket() as squatter, Load(version_over_tls(port), threads=4) as load:
        squatter.bind((BALANCER, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        load.wait_requests(30)
        path = config.cluster("cluster-b", taken, {"n1": ("127.0.8.13", 6443)})
        error = wait_until(lambda: daemon.status()["daemon"]["last_error"], timeout=10.0,
                           message="the taken bind is reported")
        # Keep the load going past the moment HAProxy would have paused its listeners.
        load.wait_requests(load.result.ok + 200, timeout=20.0)
        check = cli("check", "--config-dir", str(config.root))
    result = load.stop()
    assert result.failures == [], result.failures[:5]
    assert error["file"] == f"conf.d/{path.name}"
    message = error["message"]
    assert "clusters.cluster-b.bind" in message
    assert f"{BALANCER}:{taken}" in message and "already in use" in message
    assert f"pid {os.getpid()} (" in message  # the holder: this test process, by name
    assert daemon.generation() == generation
    assert daemon.status()["haproxy"]["reloads"] == reloads
    assert daemon.status()["haproxy"]["failed_reloads"] == 0
    assert check.returncode == 1
    assert f"conf.d/{path.name}: clusters.cluster-b.bind" in check.stderr
    assert "already in use" in check.stderr


def test_address_this_host_lacks_is_refused(
        serving: tuple[ConfigDir, DaemonProcess, int]) -> None:
    config, daemon, _ = serving
    # TEST-NET-1: never an address of this host; binding is all that is tried.
    config.write("20-b.toml", """\
        [clusters.cluster-b]
        bind = ["192.0.2.1:6443"]
        [clusters.cluster-b.nodes.n1]
        address = "127.0.8.13"
        """)
    error = wait_until(lambda: daemon.status()["daemon"]["last_error"], timeout=10.0)
    assert error["file"] == "conf.d/20-b.toml"
    assert "clusters.cluster-b.bind" in error["message"]
    assert "not an address of this host" in error["message"]
    assert daemon.status()["haproxy"]["failed_reloads"] == 0


def test_binds_the_running_haproxy_holds_are_not_conflicts(
        serving: tuple[ConfigDir, DaemonProcess, int]) -> None:
    config, daemon, _ = serving
    # The running HAProxy holds cluster-a's port and the stats port: check must not
    # report them as taken, and a structural change must still reload.
    check = cli("check", "--config-dir", str(config.root))
    assert check.returncode == 0, check.stderr
    generation = daemon.generation()
    config.write("50-toggle.toml", '[defaults]\nserver_fin_timeout = "41s"\n')
    wait_until(lambda: daemon.generation() > generation, timeout=10.0)
    assert daemon.status()["daemon"]["last_error"] is None
    assert daemon.status()["daemon"]["last_apply"]["action"] == "reload"


def test_published_binds_are_parsed_back_ipv6_included() -> None:
    config = Config(stats=StatsSettings(bind=Bind("127.0.8.1", 8404)), clusters=(
        Cluster("c0", (Bind("127.0.8.1", 6443), Bind("::1", 6443)), (Node("m1", "::1"),)),))
    assert parse_binds(render(config)) == {Bind("127.0.8.1", 8404), Bind("127.0.8.1", 6443),
                                           Bind("::1", 6443)}


def test_ipv6_squatter_is_found_and_held_binds_are_not_tried() -> None:
    with socket.socket(socket.AF_INET6) as squatter:
        squatter.bind(("::1", 0))
        squatter.listen()
        bind = Bind("::1", squatter.getsockname()[1])
        config = Config(stats=StatsSettings(bind=None),
                        clusters=(Cluster("c0", (bind,), (Node("m1", "::1"),)),),
                        bind_files={"clusters.c0.bind": "conf.d/10-c0.toml"})
        [problem] = find_problems(config, held=set())
        assert problem.key == "clusters.c0.bind" and problem.file == "conf.d/10-c0.toml"
        assert f"[::1]:{bind.port} is already in use by pid " in problem.message
        assert find_problems(config, held={bind}) == []


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.8.1"),
                                              (socket.AF_INET6, "::1")])
def test_listening_sockets_from_the_kernel_match_proc(family: int, host: str) -> None:
    """sock_diag (the READY check's source) sees what /proc/net/tcp* sees, and only
    listening sockets."""
    with socket.socket(family, socket.SOCK_STREAM) as listener, \
            socket.socket(family, socket.SOCK_STREAM) as bound_only:
        listener.bind((host, 0))
        listener.listen()
        bound_only.bind((host, 0))
        mine = {(host, listener.getsockname()[1])}
        not_listening = (host, bound_only.getsockname()[1])
        from_kernel = sockdiag.listening(family)
        assert from_kernel is not None, "netlink sock_diag answers here"
        assert mine <= from_kernel and not_listening not in from_kernel
        from_proc = listening_sockets(Path("/proc/net"))
        assert mine <= from_proc and not_listening not in from_proc
        assert mine <= listening_sockets()
    assert not mine & (sockdiag.listening(family) or set())

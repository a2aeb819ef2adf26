"""The core loop end to end: real daemon, real HAProxy, stand-in nodes on loopback."""

from __future__ import annotations

import collections
import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, cli, kill_tree
from helpers import free_port, http_get, wait_until

from haproxy_k8s.demo.standin import StandIn

pytestmark = pytest.mark.usefixtures("haproxy_bin")


def node_of(port: int) -> str:
    """Which stand-in answered a request through the balancer."""
    status, body = http_get(BALANCER, port, "/version", timeout=2.0)
    assert status == 200
    return str(json.loads(body)["node"])


def spread(port: int, count: int) -> collections.Counter[str]:
    return collections.Counter(node_of(port) for _ in range(count))


@pytest.fixture
def nodes(standin_factory: StandInFactory) -> list[StandIn]:
    return [standin_factory(f"m{i}", tls=False) for i in (1, 2, 3)]


@pytest.fixture
def setup(short_tmp: Path, nodes: list[StandIn]) -> Iterator[tuple[ConfigDir, DaemonProcess, int]]:
    config = ConfigDir(short_tmp)
    port = free_port(BALANCER)
    config.cluster("cluster-0", port, {n.name: (n.host, n.port) for n in nodes})
    daemon = DaemonProcess(config)
    try:
        daemon.start()
        yield config, daemon, port
    finally:
        daemon.stop()


def test_traffic_is_spread_over_all_nodes(setup: tuple[ConfigDir, DaemonProcess, int]) -> None:
    _, _, port = setup
    counts = spread(port, 30)
    assert set(counts) == {"m1", "m2", "m3"}, counts


def test_added_node_receives_connections_and_removed_node_stops(
        setup: tuple[ConfigDir, DaemonProcess, int], standin_factory: StandInFactory) -> None:
    config, daemon, port = setup
    m4 = standin_factory("m4", tls=False)
    config.write("20-m4.toml", f"""\
        [clusters.cluster-0.nodes.m4]
        address = "{m4.host}"
        port = {m4.port}
        """)
    wait_until(lambda: "m4" in spread(port, 8), timeout=1.0,
               message="the new node gets traffic within 1 s")
    wait_until(lambda: daemon.status()["clusters"][0]["total"] == 4, timeout=3.0)
    generation = daemon.generation()
    (config.conf_d / "20-m4.toml").unlink()
    wait_until(lambda: daemon.generation() > generation, timeout=3.0, message="node removed")
    assert daemon.status()["clusters"][0]["total"] == 3
    before = m4.connections
    assert "m4" not in spread(port, 20)
    assert m4.connections == before


def test_bad_drop_in_keeps_traffic_and_shows_in_status(
        setup: tuple[ConfigDir, DaemonProcess, int]) -> None:
    config, daemon, port = setup
    generation = daemon.generation()
    config.write("30-bad.toml", """\
        [clusters.cluster-0.nodes.evil]
        address = "127.0.8.20\\n    server x 1.2.3.4:80"
        """)
    error = wait_until(lambda: daemon.status()["daemon"]["last_error"], timeout=3.0,
                       message="the bad drop-in is reported")
    assert error["file"] == "conf.d/30-bad.toml"
    assert "clusters.cluster-0.nodes.evil.address" in error["message"]
    assert daemon.generation() == generation
    assert set(spread(port, 15)) == {"m1", "m2", "m3"}
    published = (config.state_dir / "haproxy.cfg").read_text()
    assert "evil" not in published and "1.2.3.4" not in published
    result = cli("status", "--config-dir", str(config.root))
    assert "30-bad.toml" in result.stdout
    (config.conf_d / "30-bad.toml").unlink()
    wait_until(lambda: daemon.status()["daemon"]["last_error"] is None, timeout=3.0,
               message="the error clears once the file is fixed")


def test_failed_reload_rolls_back(setup: tuple[ConfigDir, DaemonProcess, int]) -> None:
    config, daemon, port = setup
    generation = daemon.generation()
    good = (config.state_dir / "haproxy.cfg").read_text()
    # `haproxy -c` passes; the reload fails raising the FD limit to 2 * maxconn, which
    # no kernel allows above fs.nr_open. (A taken port no longer gets this far:
    # test_bind_probe.py.)
    assert int(Path("/proc/sys/fs/nr_open").read_text()) < 6_000_000
    config.write("50-maxconn.toml", "[haproxy]\nmaxconn = 3000000\n")
    error = wait_until(lambda: daemon.status()["daemon"]["last_error"], timeout=10.0,
                       message="the failed reload is reported")
    assert "reload failed" in error["message"]
    assert "FD limit" in error["message"]
    assert (config.state_dir / "haproxy.cfg").read_text() == good
    assert daemon.generation() == generation
    assert daemon.status()["haproxy"]["failed_reloads"] == 1
    assert set(spread(port, 15)) == {"m1", "m2", "m3"}


def test_sighup_and_reload_command_reapply(setup: tuple[ConfigDir, DaemonProcess, int]) -> None:
    config, daemon, _ = setup
    applies = daemon.status()["daemon"]["applies"]
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: daemon.status()["daemon"]["applies"] > applies, timeout=3.0)
    result = cli("reload", "--config-dir", str(config.root))
    assert result.returncode == 0, result.stderr
    assert "applied" in result.stdout


def test_master_killed_is_restarted(setup: tuple[ConfigDir, DaemonProcess, int]) -> None:
    _config, daemon, port = setup
    old = daemon.haproxy_pid
    assert old is not None
    kill_tree(old)
    wait_until(lambda: daemon.haproxy_pid not in (None, old), timeout=10.0,
               message="HAProxy restarted")
    wait_until(lambda: node_of(port), timeout=5.0, message="traffic flows again")
    wait_until(lambda: daemon.status()["daemon"]["haproxy_restarts"] == 1, timeout=3.0)


def test_check_and_render_without_daemon(short_tmp: Path) -> None:
    config = ConfigDir(short_tmp)
    config.cluster("cluster-0", 16443, {"m1": ("127.0.8.10", 6443)})
    rendered = cli("render", "--config-dir", str(config.root))
    assert rendered.returncode == 0, rendered.stderr
    assert "server m1 127.0.8.10:6443 weight 100" in rendered.stdout
    assert "default-server check inter " in rendered.stdout
    assert cli("check", "--config-dir", str(config.root)).returncode == 0
    assert not config.state_dir.exists()  # nothing was changed or created
    config.write("20-bad.toml", "[clusters.cluster-0.nodes.m2]\nport = 70000\n")
    bad = cli("check", "--config-dir", str(config.root))
    assert bad.returncode == 1
    assert "conf.d/20-bad.toml" in bad.stderr and "port" in bad.stderr


def test_run_on_empty_directory_fails_clearly(short_tmp: Path) -> None:
    (short_tmp / "conf.d").mkdir()
    result = cli("run", "--config-dir", str(short_tmp), timeout=30)
    assert result.returncode == 1
    assert "no clusters configured" in result.stderr
    assert "conf.d" in result.stderr


def test_start_with_broken_drop_in_serves_last_published_config(
        setup: tuple[ConfigDir, DaemonProcess, int]) -> None:
    config, daemon, port = setup
    daemon.stop()
    config.write("30-bad.toml", "[clusters.cluster-0.nodes.m9]\naddress = 'not an address'\n")
    daemon.start()
    assert set(spread(port, 15)) == {"m1", "m2", "m3"}
    error = daemon.status()["daemon"]["last_error"]
    assert error["file"] == "conf.d/30-bad.toml"


def test_unwritable_state_file_is_an_error_not_a_crash(
        setup: tuple[ConfigDir, DaemonProcess, int], standin_factory: StandInFactory) -> None:
    config, daemon, port = setup
    # As root, permissions do not stop us; a directory where the candidates go does
    # (haproxy.cfg.deferred: a runtime change's file, validated beside the loop).
    blockers = [config.state_dir / name for name in ("haproxy.cfg.candidate",
                                                    "haproxy.cfg.deferred")]
    for blocker in blockers:
        blocker.mkdir()
    m4 = standin_factory("m4", tls=False)
    config.write("20-m4.toml", f'[clusters.cluster-0.nodes.m4]\naddress = "{m4.host}"\n'
                               f"port = {m4.port}\n")
    error = wait_until(lambda: daemon.status()["daemon"]["last_error"], timeout=5.0)
    assert "cannot write" in error["message"]
    assert daemon.proc is not None and daemon.proc.poll() is None
    # A node add goes live through the runtime API before its file is written
    # (apply/deferred.py); the file that cannot be written is what fails. It
    # serves once its first check passed.
    wait_until(lambda: "m4" in spread(port, 9), timeout=5.0, message="m4 serves")
    assert "server m4" not in (config.state_dir / "haproxy.cfg").read_text()
    for blocker in blockers:
        blocker.rmdir()
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "m4" in spread(port, 8), timeout=5.0, message="applies once writable")


def test_ipv6_bind_and_node(short_tmp: Path, standin_factory: StandInFactory) -> None:
    """`[v6]:port` binds and IPv6 node addresses, over ::1 (loopback)."""
    node = standin_factory("m1", host="::1", tls=False)
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    config = ConfigDir(short_tmp)
    config.write("10-v6.toml", f"""\
        [clusters.cluster-6]
        bind = ["[::1]:{port}"]
        [clusters.cluster-6.nodes.m1]
        address = "::1"
        port = {node.port}
        """)
    daemon = DaemonProcess(config)
    try:
        daemon.start()
        status, body = wait_until(lambda: http_get("::1", port, "/version"), timeout=5.0)
        assert status == 200 and json.loads(body)["node"] == "m1"
        assert daemon.status()["clusters"][0]["bind"] == [f"[::1]:{port}"]
    finally:
        daemon.stop()


def test_status_of_one_cluster(setup: tuple[ConfigDir, DaemonProcess, int],
                               standin_factory: StandInFactory) -> None:
    config, daemon, _ = setup
    other = standin_factory("o1", tls=False)
    generation = daemon.generation()
    config.cluster("cluster-1", free_port(BALANCER), {"o1": (other.host, other.port)})
    wait_until(lambda: daemon.generation() > generation, timeout=10.0,
               message="cluster-1 applied")
    result = cli("status", "cluster-1", "--json", "--config-dir", str(config.root))
    doc = json.loads(result.stdout)
    assert [c["name"] for c in doc["clusters"]] == ["cluster-1"]
    assert [n["name"] for n in doc["clusters"][0]["nodes"]] == ["o1"]
    table = cli("status", "cluster-0", "--config-dir", str(config.root)).stdout
    rows = [line.split()[0] for line in table.splitlines() if line.startswith("cluster-")]
    assert rows == ["cluster-0"], table
    missing = cli("status", "nope", "--config-dir", str(config.root))
    assert missing.returncode == 4 and "nope: no such cluster or node" in missing.stderr

"""Faults and mistakes that must never cost live traffic or make `status` lie.

Each test reproduces one case of the faults issue with the real daemon and HAProxy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, cli, kill_tree
from helpers import free_port, require_tool, version_over_tls, wait_until
from notify import NotifySocket

from haproxy_k8s.config.names import is_failopen_server
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
                       if backend == "be_big" and name not in ("FRONTEND", "BACKEND")
                       and not is_failopen_server(name))

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


@pytest.fixture
def small_fs(short_tmp: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of the test's own, to make read-only (root only; unmounted after)."""
    require_tool("mount", "util-linux")
    if os.geteuid() != 0:
        message = "mounting a tmpfs needs root"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: required in CI")
        pytest.skip(message)
    root = short_tmp / "fs"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0750", "tmpfs", str(root)],
                   check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def _fill(root: Path) -> Path:
    """Fill the file system to the last byte, as a full disk is; return the filler."""
    filler = root / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_state_dir_is_reported_and_retried(
        short_tmp: Path, small_fs: Path, standin_factory: StandInFactory) -> None:
    """A full (or read-only) state dir: status says so, metrics count it, the daemon retries."""
    nodes = [standin_factory("m1", tls=False), standin_factory("m2", tls=False)]
    config = ConfigDir(short_tmp, state_dir=small_fs / "state")
    config.cluster("cluster-0", free_port(BALANCER), {"m1": (nodes[0].host, nodes[0].port)})
    daemon = DaemonProcess(config).start()
    try:
        filler = _fill(small_fs)
        config.write("20-m2.toml", f'[clusters.cluster-0.nodes.m2]\naddress = "{nodes[1].host}"'
                                   f"\nport = {nodes[1].port}\n")

        def live_error() -> dict[str, Any] | None:
            doc = json.loads(cli("status", "--json", "--config-dir", str(config.root)).stdout)
            daemon_doc: dict[str, Any] = doc["daemon"]
            return daemon_doc if daemon_doc.get("retry_at") else None

        seen = wait_until(live_error, 10.0, message="status shows the write failure")
        assert "cannot write" in str(seen["last_error"]["message"])
        assert seen["state_dir_errors"] >= 1
        table = cli("status", "--config-dir", str(config.root)).stdout
        assert "state:" in table and "next try" in table
        filler.unlink()
        # No SIGHUP, no edit: the retry applies the waiting change by itself.
        wait_until(lambda: len(daemon.status().get("clusters", [{}])[0].get("nodes", [])) == 2,
                   40.0, interval=0.2, message="the pending edit applied after the retry")
        assert daemon.status()["daemon"]["last_error"] is None
    finally:
        (small_fs / "filler").unlink(missing_ok=True)
        daemon.stop()


def _masters(state_dir: Path) -> list[int]:
    """HAProxy masters started for this state dir (workers share the command line)."""
    want = f"{state_dir}/master.sock,mode,600"
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if want in (proc.info["cmdline"] or []):
                parent = proc.parent()
                if parent is None or want not in parent.cmdline():
                    found.append(proc.pid)
    return found


def _serving_pair(short_tmp: Path, standin_factory: StandInFactory
                  ) -> tuple[ConfigDir, DaemonProcess, int]:
    nodes = [standin_factory("m1"), standin_factory("m2")]
    config = ConfigDir(short_tmp)
    port = free_port(BALANCER)
    config.cluster("cluster-0", port, {n.name: (n.host, n.port) for n in nodes})
    return config, DaemonProcess(config).start(), port


def _state(config: ConfigDir, node: str) -> str:
    doc = json.loads(cli("status", "--json", "--config-dir", str(config.root)).stdout)
    return str(next(n["state"] for n in doc["clusters"][0]["nodes"] if n["name"] == node))


def test_a_deleted_state_dir_is_rebuilt_under_the_same_master(
        short_tmp: Path, standin_factory: StandInFactory) -> None:
    config, daemon, port = _serving_pair(short_tmp, standin_factory)
    master = daemon.haproxy_pid
    try:
        assert cli("maint", "cluster-0/m2", "--config-dir", str(config.root)).returncode == 0
        with Load(version_over_tls(port)) as load:
            load.wait_requests(20)
            assert load.result.by_node["m2"] == 0
            shutil.rmtree(config.state_dir)
            def status_works() -> bool:
                done = cli("status", "--config-dir", str(config.root))
                last[:] = [done.stdout + done.stderr]
                return done.returncode in (0, 1)

            last: list[str] = []
            try:
                wait_until(status_works, 15.0, interval=0.2, message="status works again")
            except AssertionError as e:
                raise AssertionError(f"{e}; status said: {last}") from e
            load.wait_requests(load.result.ok + 50, timeout=10.0)
        result = load.stop()
        assert result.failures == [], result.failures[:5]
        # Not one client on the node in maint, not even while the new worker started.
        assert result.by_node["m2"] == 0 and result.by_node["m1"] > 0, result.by_node
        assert daemon.haproxy_pid == master and _masters(config.state_dir) == [master]
        assert _state(config, "m2") == "MAINT"  # the operator's maint survived
        assert (config.state_dir / "control.sock").exists()
    finally:
        daemon.stop()


def test_a_restarted_daemon_takes_over_the_orphan_instead_of_a_second_master(
        short_tmp: Path, standin_factory: StandInFactory) -> None:
    config, daemon, port = _serving_pair(short_tmp, standin_factory)
    master = daemon.haproxy_pid
    assert master is not None
    second = DaemonProcess(config)
    try:
        with Load(version_over_tls(port)) as load:
            load.wait_requests(20)
            daemon.signal(signal.SIGKILL)  # HAProxy keeps serving on its own
            assert daemon.proc is not None
            daemon.proc.wait(timeout=10)
            shutil.rmtree(config.state_dir)
            second.start()
            load.wait_requests(load.result.ok + 50, timeout=10.0)
        result = load.stop()
        assert result.failures == [], result.failures[:5]
        assert _masters(config.state_dir) == [master], "one master: the orphan, taken over"
        assert cli("status", "--config-dir", str(config.root)).returncode == 0
    finally:
        second.stop()
        kill_tree(master)


def test_status_follows_the_running_daemon_when_a_drop_in_moves_state_dir(
        short_tmp: Path, standin_factory: StandInFactory) -> None:
    config, daemon, _ = _serving_pair(short_tmp, standin_factory)
    try:
        config.write("90-move.toml", f'[haproxy]\nstate_dir = "{short_tmp / "elsewhere"}"\n')
        error = wait_until(lambda: daemon.status()["daemon"]["last_error"], 10.0,
                           message="the move is refused")
        assert error["file"] == "conf.d/90-move.toml"
        assert "haproxy.state_dir" in error["message"]
        result = cli("status", "--config-dir", str(config.root))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "conf.d/90-move.toml" in result.stdout
        assert not (short_tmp / "elsewhere").exists()
    finally:
        daemon.stop()


def test_a_haproxy_refusal_names_the_drop_in(short_tmp: Path,
                                             standin_factory: StandInFactory) -> None:
    config, daemon, _ = _serving_pair(short_tmp, standin_factory)
    try:
        bad = short_tmp / "not-a-cert.pem"
        bad.write_text("this is not PEM\n")
        config.write("30-cert.toml", f'[clusters.cluster-0]\ncheck = "https"\n'
                                     f'client_cert = "{bad}"\n')
        error = wait_until(lambda: daemon.status()["daemon"]["last_error"], 10.0,
                           message="haproxy -c refuses the certificate")
        assert error["file"] == "conf.d/30-cert.toml", error
    finally:
        daemon.stop()


def test_a_stopped_daemon_makes_status_say_so_and_how_old_it_is(
        short_tmp: Path, standin_factory: StandInFactory) -> None:
    config, daemon, _ = _serving_pair(short_tmp, standin_factory)
    try:
        daemon.signal(signal.SIGSTOP)
        result = cli("status", "--json", "--config-dir", str(config.root))
        doc = json.loads(result.stdout)
        assert result.returncode == 3
        assert any("does not answer" in u for u in doc["unreachable"]), doc["unreachable"]
        assert doc["daemon"]["stale_s"] is not None
    finally:
        daemon.signal(signal.SIGCONT)
        daemon.stop()


def test_deleting_a_node_drop_in_applies_at_once(short_tmp: Path,
                                                 standin_factory: StandInFactory) -> None:
    """Only a cluster, a bind or a file's content going away waits; a node's file does not."""
    config, daemon, _ = _serving_pair(short_tmp, standin_factory)
    try:
        extra = standin_factory("m3", tls=False)
        config.write("20-m3.toml", f'[clusters.cluster-0.nodes.m3]\naddress = "{extra.host}"\n'
                                   f"port = {extra.port}\n")
        wait_until(lambda: len(daemon.status()["clusters"][0]["nodes"]) == 3, 5.0)
        (config.conf_d / "20-m3.toml").unlink()
        wait_until(lambda: daemon.status()["daemon"]["history"][-1]["plan"].startswith(
            "runtime: remove"), 1.5, message="the removal applied without a hold")
        assert daemon.status()["daemon"]["held"] is None
    finally:
        daemon.stop()


def test_an_adopted_master_still_tells_why_a_reload_failed(
        short_tmp: Path, standin_factory: StandInFactory) -> None:
    """HAProxy's output goes to a file in the state dir: a daemon that adopted the master
    (after a crash) reads the alert of a refused reload as the one that started it would."""
    config, daemon, _ = _serving_pair(short_tmp, standin_factory)
    master = daemon.haproxy_pid
    second = DaemonProcess(config)
    try:
        daemon.signal(signal.SIGKILL)
        assert daemon.proc is not None
        daemon.proc.wait(timeout=10)
        second.start()
        assert second.haproxy_pid == master  # adopted, not restarted
        # `haproxy -c` passes; the reload fails raising the FD limit (test_daemon.py).
        assert int(Path("/proc/sys/fs/nr_open").read_text()) < 6_000_000
        config.write("50-maxconn.toml", "[haproxy]\nmaxconn = 3000000\n")
        error = wait_until(lambda: second.status()["daemon"]["last_error"], 15.0,
                           message="the failed reload is reported")
        assert "reload failed" in error["message"] and "FD limit" in error["message"], error
    finally:
        second.stop()
        if master is not None:
            kill_tree(master)

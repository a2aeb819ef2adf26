"""`haproxy-k8s demo` as an operator runs it: a child process, real HAProxy, real TLS.

The demo gets free ports through HAPROXY_K8S_DEMO_PORTS so it never collides with a demo
someone is running on the default 127.0.8.1:6443.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from daemonutil import BALANCER, child_env, cli, kill_tree
from helpers import free_port, https_get, wait_until

from haproxy_k8s.demo.layout import PORTS_ENV, SPARE, DemoPorts, add_node_dropin
from haproxy_k8s.haproxy.paths import read_pid

pytestmark = [pytest.mark.usefixtures("haproxy_bin"), pytest.mark.slow]

START_TIMEOUT = 30.0
DIRECTORY_LINE = re.compile(r"^  directory   (\S+)", re.MULTILINE)


class Demo:
    """`python -m haproxy_k8s.cli demo …` with its output in a file."""

    def __init__(self, out: Path, *args: str, ports: DemoPorts | None = None) -> None:
        self.ports = ports or DemoPorts(balancer=free_port(BALANCER), stats=free_port(BALANCER),
                                        metrics=free_port(BALANCER), node=0)
        self.out = out
        spec = f"{self.ports.balancer},{self.ports.stats},{self.ports.metrics},{self.ports.node}"
        with out.open("wb") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "haproxy_k8s.cli", "demo", *args],
                stdout=sink, stderr=subprocess.STDOUT, env=child_env(**{PORTS_ENV: spec}))
        self.haproxy_pid: int | None = None

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_started(self) -> Path:
        """The demo directory, once the banner is out (HAProxy serves by then)."""
        def banner() -> Path | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"demo exited {self.proc.returncode}:\n{self.output()}")
            match = DIRECTORY_LINE.search(self.output())
            return Path(match[1]) if match else None

        root = wait_until(banner, START_TIMEOUT, message="demo banner")
        self.haproxy_pid = read_pid(root / "state" / "haproxy.pid")
        assert self.haproxy_pid is not None
        return root

    def https_get(self, path: str, root: Path) -> tuple[int, bytes]:
        return https_get(BALANCER, self.ports.balancer, path, ca_file=root / "certs" / "ca.crt")

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"demo still running:\n{self.output()}") from None

    def kill(self) -> None:
        """Last resort, for a failed test: nothing may outlive it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.haproxy_pid is not None:
            kill_tree(self.haproxy_pid)


@pytest.fixture
def demos(tmp_path: Path) -> Iterator[list[Demo]]:
    started: list[Demo] = []
    try:
        yield started
    finally:
        for demo in started:
            print(f"--- demo output ---\n{demo.output()[-6000:]}")
            demo.kill()


def node_of(demo: Demo, root: Path) -> str:
    status, body = demo.https_get("/version", root)
    assert status == 200
    return str(json.loads(body)["node"])


def test_demo_serves_through_the_balancer_and_cleans_up_on_sigint(
        tmp_path: Path, demos: list[Demo]) -> None:
    demo = Demo(tmp_path / "out.txt", "--duration", "120")
    demos.append(demo)
    root = demo.wait_started()
    assert root.parent == Path("/tmp")
    # Real TLS end to end: the client verifies the stand-in's certificate through HAProxy.
    nodes = wait_until(lambda: {node_of(demo, root) for _ in range(12)} == {
        "k8s-master-1", "k8s-master-2", "k8s-master-3"}, timeout=10,
        message="every configured node answers through the balancer")
    assert nodes
    out = demo.output()
    assert f"curl -k https://{BALANCER}:{demo.ports.balancer}/version" in out
    assert f"http://{BALANCER}:{demo.ports.stats}/stats" in out
    assert f"status --config-dir {root}/config" in out

    demo.proc.send_signal(signal.SIGINT)
    assert demo.wait_exit() == 0
    assert not root.exists(), "the temporary directory is removed"
    haproxy = demo.haproxy_pid
    assert haproxy is not None
    wait_until(lambda: not psutil.pid_exists(haproxy), timeout=5, message="HAProxy stopped")
    assert "Traceback" not in demo.output()


def test_demo_follows_what_the_banner_says(tmp_path: Path, short_tmp: Path,
                                          demos: list[Demo]) -> None:
    """`status`, adding the spare node with the banner's drop-in, and failing a node."""
    demo = Demo(tmp_path / "out.txt", "--duration", "120", "--dir", str(short_tmp / "d"))
    demos.append(demo)
    root = demo.wait_started()
    config_dir = str(root / "config")

    def status() -> tuple[int, dict[str, object]]:
        done = cli("status", "--json", "--config-dir", config_dir, timeout=20)
        return done.returncode, json.loads(done.stdout)

    wait_until(lambda: status()[0] == 0, timeout=15, message="status: every node UP")

    port = re.search(rf'address = "{SPARE[1]}"\nport = (\d+)', demo.output())
    assert port, "the banner shows the drop-in for the spare node"
    (root / "config" / "conf.d" / "20-k8s-master-4.toml").write_text(
        add_node_dropin(SPARE[1], int(port[1])))
    wait_until(lambda: "k8s-master-4" in {node_of(demo, root) for _ in range(12)}, timeout=10,
               message="the added node receives requests")

    (root / "nodes" / "k8s-master-2").write_text("unready\n")

    def master_2_down() -> bool:
        code, doc = status()
        clusters = doc["clusters"]
        assert isinstance(clusters, list)
        states = {n["name"]: n["state"] for n in clusters[0]["nodes"]}
        return code == 1 and states["k8s-master-2"] == "DOWN"

    wait_until(master_2_down, timeout=15, message="k8s-master-2 DOWN after /readyz fails")

    demo.proc.send_signal(signal.SIGTERM)
    assert demo.wait_exit() == 0
    assert (root / "config" / "haproxy-k8s.toml").exists(), "--dir is kept"


def test_duration_stops_the_demo(tmp_path: Path, demos: list[Demo]) -> None:
    demo = Demo(tmp_path / "out.txt", "--duration", "2")
    demos.append(demo)
    root = demo.wait_started()
    assert demo.wait_exit() == 0
    assert "stopping on demo duration" in demo.output()
    assert not root.exists()


def test_a_taken_port_fails_clearly(tmp_path: Path, demos: list[Demo]) -> None:
    with socket.create_server((BALANCER, 0)) as taken:
        port = taken.getsockname()[1]
        ports = DemoPorts(balancer=port, stats=free_port(BALANCER),
                          metrics=free_port(BALANCER), node=0)
        demo = Demo(tmp_path / "out.txt", ports=ports)
        demos.append(demo)
        assert demo.wait_exit() == 1
    out = demo.output()
    assert f"cannot use {BALANCER}:{port} for the balancer" in out
    assert "Traceback" not in out

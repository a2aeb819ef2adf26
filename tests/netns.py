"""A two-balancer lab in network namespaces the test creates (and always removes).

    client ns ─┐
    b1 ns ─────┤ bridge in a "switch" ns
    b2 ns ─────┤
    nodes ns ──┘   stand-in apiservers on 10.231.0.10 and .11

Addresses (10.231.0.0/24) exist inside these namespaces only; nothing is routed to
the host. Namespace names are unique per lab, so parallel runs do not collide.
Every process is started through `ip netns exec` as our child and stopped by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psutil
from daemonutil import ConfigDir, child_env, kill_tree
from helpers import wait_until

from haproxy_k8s.haproxy.paths import read_pid

NET = "10.231.0"
VIP = f"{NET}.1"
BALANCERS = {"b1": f"{NET}.2", "b2": f"{NET}.3"}
CLIENT = f"{NET}.100"
NODES = [f"{NET}.10", f"{NET}.11"]
API_PORT = 6443


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20,
                          check=check)


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tag = uuid.uuid4().hex[:6]
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.daemons: dict[str, Balancer] = {}

    def ns(self, role: str) -> str:
        return f"hk{self.tag}{role}"

    # -- topology ----------------------------------------------------------------
    def build(self) -> Lab:
        switch = self._add_ns("sw")
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "br0", "up")
        for role, address in [*BALANCERS.items(), ("cl", CLIENT), ("nd", NODES[0])]:
            self._plug(role, address)
        ip("-n", self.ns("nd"), "addr", "add", f"{NODES[1]}/24", "dev", "eth1")
        for role in BALANCERS:
            # HAProxy on the backup binds the VIP it does not hold yet.
            self.exec(role, "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1")
        return self

    def _add_ns(self, role: str) -> str:
        name = self.ns(role)
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def _plug(self, role: str, address: str) -> None:
        name = self._add_ns(role)
        outer, port = f"hk{self.tag}{role}o", f"p{role}"
        ip("link", "add", outer, "type", "veth", "peer", "name", f"hk{self.tag}{role}i")
        ip("link", "set", f"hk{self.tag}{role}i", "netns", name, "name", "eth1")
        ip("link", "set", outer, "netns", self.ns("sw"), "name", port)
        ip("-n", self.ns("sw"), "link", "set", port, "master", "br0", "up")
        ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth1")
        ip("-n", name, "link", "set", "eth1", "up")

    def exec(self, role: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns(role), *cmd],
                              capture_output=True, text=True, timeout=20, check=True)

    def spawn(self, role: str, cmd: list[str], log: Path,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns(role), *cmd],
                                    stdout=out, stderr=subprocess.STDOUT,
                                    env=child_env(**(env or {})))
        self.procs.append(proc)
        return proc

    # -- parts -----------------------------------------------------------------------
    def start_nodes(self) -> None:
        for i, address in enumerate(NODES):
            self.spawn("nd", [sys.executable, "-m", "haproxy_k8s.demo.standin", "--name",
                              f"m{i + 1}", "--host", address, "--port", str(API_PORT)],
                       self.root / f"node{i}.log")
        for address in NODES:
            wait_until(lambda a=address: self.exec(  # type: ignore[misc]
                "b1", sys.executable, "-c", _PROBE.format(a, API_PORT)), timeout=10,
                message=f"stand-in on {address}")

    def balancer(self, role: str, priority: int, *, preempt: bool = False,
                 advert: str = "300ms") -> Balancer:
        peer = next(a for r, a in BALANCERS.items() if r != role)
        balancer = Balancer(self, role, priority, peer, preempt, advert)
        first = next(iter(self.daemons.values()), None)
        if first is not None:
            # Same stats and metrics ports as the first balancer (each has its own
            # loopback), so both render the same haproxy.cfg, as a real pair would.
            balancer.config.stats_port = first.config.stats_port
            balancer.config.metrics_port = first.config.metrics_port
            main = balancer.config.root / "haproxy-k8s.toml"
            text = main.read_text()
            for ours, theirs in _ports(balancer.config.root, first.config.root):
                text = text.replace(ours, theirs)
            main.write_text(text)
        self.daemons[role] = balancer
        return balancer

    def holders(self) -> list[str]:
        """The balancers that have the VIP on their interface now."""
        return [role for role in BALANCERS
                if f" {VIP}/" in ip("-n", self.ns(role), "-o", "addr", "show", "dev",
                                    "eth1").stdout]

    def client(self, duration: float = 90.0) -> ClientLoop:
        log = self.root / "client.log"
        proc = self.spawn("cl", [sys.executable, str(Path(__file__).with_name("vipclient.py")),
                                 VIP, str(API_PORT), "--duration", str(duration)], log)
        return ClientLoop(proc, log)

    # -- teardown (runs even when the test failed) -------------------------------------
    def close(self) -> None:
        for balancer in self.daemons.values():
            balancer.stop()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for name in reversed(self.namespaces):
            ip("netns", "del", name, check=False)


def _ports(ours: Path, theirs: Path) -> list[tuple[str, str]]:
    def binds(root: Path) -> list[str]:
        return [line.split('"')[1].rsplit(":", 1)[1]
                for line in (root / "haproxy-k8s.toml").read_text().splitlines()
                if line.startswith("bind = ")]
    return [(f":{a}\"", f":{b}\"") for a, b in zip(binds(ours), binds(theirs), strict=True)]


_PROBE = "import socket; socket.create_connection(('{0}', {1}), timeout=1).close()"


class Balancer:
    """One haproxy-k8s daemon (with HAProxy and keepalived) in its namespace."""

    def __init__(self, lab: Lab, role: str, priority: int, peer: str, preempt: bool,
                 advert: str) -> None:
        self.lab, self.role = lab, role
        self.config = ConfigDir(lab.root / role, extra_main=textwrap.dedent(f"""\
            [vip]
            address = "{VIP}/24"
            interface = "eth1"
            router_id = 51
            priority = {priority}
            peers = ["{peer}"]
            preempt = {"true" if preempt else "false"}
            advert_interval = "{advert}"
            manage = "child"
            """))
        nodes = {f"m{i + 1}": (a, API_PORT) for i, a in enumerate(NODES)}
        self.config.cluster("cluster-0", API_PORT, nodes)
        text = self.config.conf_d.joinpath("10-cluster-0.toml").read_text()
        self.config.write("10-cluster-0.toml", text.replace("127.0.8.1", VIP))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = lab.root / f"{role}.log"

    @property
    def state(self) -> Path:
        return self.config.state_dir

    def start(self, timeout: float = 20.0, env: dict[str, str] | None = None) -> Balancer:
        self.proc = self.lab.spawn(self.role, [
            sys.executable, "-m", "haproxy_k8s.cli", "run", "--config-dir",
            str(self.config.root), "--log-level", "debug"], self.log, env)
        wait_until(self._started, timeout, message=f"{self.role} start")
        return self

    def _started(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.role} exited: {self.log_text()[-3000:]}")
        doc = self.config.status_file()
        # This daemon's document, not the one a killed predecessor left behind.
        ours = doc.get("daemon", {}).get("pid") == self.proc.pid
        return bool(ours and doc.get("haproxy", {}).get("pid") and doc.get("vip", {}).get("fit"))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def role_now(self) -> str:
        return str(self.config.status_file().get("vip", {}).get("role"))

    def keepalived_pids(self) -> set[int]:
        """Every keepalived process running this balancer's config (parent and VRRP child)."""
        config = str(self.state / "keepalived.conf")
        pids = set()
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if cmdline and "keepalived" in cmdline[0] and config in cmdline:
                pids.add(proc.pid)
        return pids

    def stop(self) -> None:
        print(f"--- {self.role} log tail ---\n{self.log_text()[-4000:]}")
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        # Whatever a SIGKILLed daemon left behind, by the pids it recorded.
        for pid_file in ("haproxy.pid", "keepalived.pid"):
            pid = read_pid(self.state / pid_file)
            if pid is not None:
                kill_tree(pid)
        with contextlib.suppress(OSError):
            os.unlink(self.state / "keepalived.pid")


class ClientLoop:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc, self.log = proc, log

    def samples(self) -> list[tuple[float, bool]]:
        out = []
        for line in self.log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out.append((float(parts[0]), parts[1] == "ok"))
        return out

    def outage(self, since: float) -> tuple[float | None, float | None]:
        """(seconds from `since` to the last failure, to the first success after it)."""
        after = [(t, ok) for t, ok in self.samples() if t >= since]
        fails = [t for t, ok in after if not ok]
        last_fail = fails[-1] if fails else since
        back = next((t for t, ok in after if ok and t > last_fail), None)
        return (last_fail - since if fails else None,
                back - since if back is not None else None)

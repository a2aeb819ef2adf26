"""Health, status and metrics end to end: the real daemon, HAProxy and TLS stand-ins.

ConfigDir checks every 500 ms with fall 2, so "DOWN within inter * fall + 1 s" is 2 s.
"""

from __future__ import annotations

import base64
import collections
import http.client
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, cli, kill_tree
from helpers import free_port, http_get, https_get, wait_until
from prometheus_client.parser import text_string_to_metric_families

from haproxy_k8s.config.names import is_failopen_server
from haproxy_k8s.daemon.health import read_stats
from haproxy_k8s.daemon.states import node_state

pytestmark = pytest.mark.usefixtures("haproxy_bin")

INTER, FALL = 0.5, 2  # as ConfigDir writes them
BOUND = INTER * FALL + 1.0
ALLOWED_SOURCE, OTHER_SOURCE = "127.0.8.2", "127.0.9.1"


@dataclass
class Balancer:
    config: ConfigDir
    daemon: DaemonProcess
    port: int
    nodes: list[Any]

    def states(self) -> dict[str, str]:
        """Node name -> state, straight from HAProxy's admin socket (not the
        nodes' fail-open twins)."""
        rows = read_stats(self.config.state_dir / "admin.sock")
        return {sv: node_state(row) for (px, sv), row in rows.items()
                if px == "be_cluster-0" and sv != "BACKEND" and not is_failopen_server(sv)}

    def status(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli("status", "--config-dir", str(self.config.root), *args)

    def status_json(self) -> tuple[int, dict[str, Any]]:
        result = self.status("--json")
        return result.returncode, json.loads(result.stdout)

    def wait_states(self, want: dict[str, str], timeout: float = 5.0) -> None:
        wait_until(lambda: self.states() == want, timeout=timeout, message=f"states {want}")

    def wait_exit(self, code: int, timeout: float = 10.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            got, doc = self.status_json()
            return doc if got == code else None

        return wait_until(reached, timeout=timeout, interval=0.1,
                          message=f"`status` exits {code}")


@pytest.fixture
def start_balancer(short_tmp: Path,
                   standin_factory: StandInFactory) -> Iterator[Callable[..., Balancer]]:
    """Three TLS stand-ins behind the daemon with https /readyz checks."""
    daemons: list[DaemonProcess] = []

    def start(dropins: dict[str, str] | None = None) -> Balancer:
        nodes = [standin_factory(f"m{i}") for i in (1, 2, 3)]
        config = ConfigDir(short_tmp, check="https")
        for name, text in (dropins or {}).items():
            config.write(name, text)
        port = free_port(BALANCER)
        config.cluster("cluster-0", port, {n.name: (n.host, n.port) for n in nodes})
        daemon = DaemonProcess(config)
        daemons.append(daemon)
        daemon.start()
        return Balancer(config, daemon, port, nodes)

    try:
        yield start
    finally:
        for daemon in daemons:
            daemon.stop()


ALL_UP = {"m1": "UP", "m2": "UP", "m3": "UP"}


def curl_version(port: int) -> dict[str, Any]:
    """`curl -k https://<lb>/version` (the real curl when installed)."""
    if shutil.which("curl"):
        out = subprocess.run(["curl", "-sSk", "--max-time", "5",
                              f"https://{BALANCER}:{port}/version"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return dict(json.loads(out))
    status, body = https_get(BALANCER, port, "/version", timeout=5.0)
    assert status == 200
    return dict(json.loads(body))


def test_all_up_then_stopped(start_balancer: Callable[..., Balancer]) -> None:
    lb = start_balancer()
    lb.wait_states(ALL_UP)

    def checked() -> dict[str, Any] | None:
        # UP is HAProxy's assumption before the first check ("* INI"): wait for results.
        code, doc = lb.status_json()
        nodes = doc["clusters"][0]["nodes"] if doc.get("clusters") else []
        done = code == 0 and all(n["check"].startswith("L7OK/200") for n in nodes)
        return doc if done else None

    doc = wait_until(checked, timeout=10.0, interval=0.1, message="every node checked L7OK")
    assert curl_version(lb.port)["node"] in ALL_UP
    # The JSON contract of DESIGN.md §1: these keys, these meanings.
    assert {"pid", "running", "generation", "applied_at", "last_error"} <= set(doc["daemon"])
    assert doc["daemon"]["running"] is True and doc["daemon"]["last_error"] is None
    assert {"pid", "version", "reloads", "failed_reloads"} <= set(doc["haproxy"])
    assert doc["haproxy"]["version"].startswith("2.")
    (cluster,) = doc["clusters"]
    assert (cluster["name"], cluster["up"], cluster["total"]) == ("cluster-0", 3, 3)
    assert cluster["bind"] == [f"{BALANCER}:{lb.port}"]
    for node in cluster["nodes"]:
        assert set(node) >= {"name", "address", "port", "state", "check", "last_change_s",
                             "sessions", "admin"}
        assert node["state"] == "UP" and node["check"].startswith("L7OK/200")
        assert node["admin"] == "ready"
    # status.json, fed by the daemon's poller, agrees.
    wait_until(lambda: lb.config.status_file()["clusters"][0]["up"] == 3, timeout=3.0)
    table = lb.status()
    assert table.returncode == 0 and "healthy" in table.stdout and "cluster-0" in table.stdout

    lb.daemon.stop()  # the daemon stops HAProxy with it
    result = lb.status()
    assert result.returncode == 3
    assert "cannot reach daemon, master socket, admin socket" in result.stdout


class Clients(threading.Thread):
    """HTTPS requests through the balancer, one after another; runs `kill` between two.

    Killing from this thread means no request is in flight at that moment, so any
    failure afterwards is a new connection the balancer failed to place.
    """

    def __init__(self, port: int, kill: Callable[[], None], kill_after: int) -> None:
        super().__init__(name="test-clients")
        self.port, self.kill, self.kill_after = port, kill, kill_after
        self.killed, self.halt = threading.Event(), threading.Event()
        self.killed_at = 0.0
        self.before: collections.Counter[str] = collections.Counter()
        self.after: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []

    def run(self) -> None:
        sent = 0
        while not self.halt.is_set():
            if sent == self.kill_after:
                self.kill()
                self.killed_at = time.monotonic()
                self.killed.set()
            self._request()
            sent += 1

    def _request(self) -> None:
        try:
            status, body = https_get(BALANCER, self.port, "/version", timeout=5.0)
        except OSError as e:
            self.failures.append(repr(e))
            return
        if status != 200:
            self.failures.append(f"HTTP {status}")
            return
        (self.after if self.killed.is_set() else self.before)[json.loads(body)["node"]] += 1


def test_killed_node_is_down_within_bound_and_no_client_fails(
        start_balancer: Callable[..., Balancer]) -> None:
    lb = start_balancer()
    lb.wait_states(ALL_UP)
    victim = lb.nodes[0]
    clients = Clients(lb.port, lambda: victim.set_mode("refuse"), kill_after=6)
    clients.start()
    try:
        assert clients.killed.wait(10), clients.failures
        lb.wait_states({**ALL_UP, victim.name: "DOWN"}, timeout=BOUND + 1)
        down_after = time.monotonic() - clients.killed_at
        wait_until(lambda: sum(clients.after.values()) >= 10, timeout=10,
                   message="traffic keeps flowing after the kill")
    finally:
        clients.halt.set()
        clients.join(15)
    assert clients.failures == []
    assert down_after <= BOUND, f"DOWN after {down_after:.2f}s"
    assert victim.name not in clients.after
    # Clients did pick the dead node and were redispatched, not just lucky.
    redispatched = read_stats(lb.config.state_dir / "admin.sock")[("be_cluster-0", "m1")]
    assert int(redispatched["wredis"]) >= 1, redispatched
    # HANA: `observe layer4` marked it DOWN before a check did (L4CON); HAProxy's
    # log message makes the daemon read the row at that very moment.
    wait_until(lambda: re.search(r"cluster-0/m1 UP → DOWN \((L4CON|HANA)",
                                 lb.daemon.log_text()), timeout=3.0,
               message="the transition is logged")
    doc = lb.wait_exit(1)
    assert doc["clusters"][0]["nodes"][0]["state"] == "DOWN"


def test_readyz_failures_set_status_exit_codes_and_readiness_url(
        start_balancer: Callable[..., Balancer]) -> None:
    lb = start_balancer()
    lb.wait_states(ALL_UP)

    def healthz() -> int:
        return http_get(BALANCER, lb.config.stats_port, "/healthz")[0]

    assert healthz() == 200
    lb.nodes[0].readyz_status = 500
    failed_at = time.monotonic()
    lb.wait_states({**ALL_UP, "m1": "DOWN"}, timeout=BOUND + 1)
    assert time.monotonic() - failed_at <= BOUND
    doc = lb.wait_exit(1)
    m1 = doc["clusters"][0]["nodes"][0]
    assert m1["check"].startswith("L7STS/500") and m1["check_detail"] == "Internal Server Error"
    assert healthz() == 200  # one UP node still serves the cluster

    for node in lb.nodes[1:]:
        node.readyz_status = 500
    lb.wait_states(dict.fromkeys(ALL_UP, "DOWN"))
    assert lb.wait_exit(2)["clusters"][0]["up"] == 0
    assert healthz() == 503
    assert "down: no UP node in cluster-0" in lb.status().stdout

    for node in lb.nodes:
        node.readyz_status = 200
    lb.wait_states(ALL_UP)
    lb.wait_exit(0)
    assert healthz() == 200
    wait_until(lambda: "cluster-0/m1 DOWN → UP (L7OK/200)" in lb.daemon.log_text(),
               timeout=3.0, message="the recovery is logged")
    log = lb.daemon.log_text()
    assert log.count("cluster-0/m1 UP → DOWN (L7STS/500: Internal Server Error)") == 1


def test_status_tells_the_truth_without_the_daemon(
        start_balancer: Callable[..., Balancer]) -> None:
    lb = start_balancer()
    lb.wait_states(ALL_UP)
    lb.wait_exit(0)
    assert lb.daemon.proc is not None
    lb.daemon.proc.kill()  # HAProxy runs in its own session and keeps serving
    lb.daemon.proc.wait(10)
    code, doc = lb.status_json()
    assert code == 3 and doc["daemon"]["running"] is False
    assert any(p.startswith("daemon:") for p in doc["unreachable"])
    assert doc["haproxy"]["reachable"] is True
    assert [n["state"] for n in doc["clusters"][0]["nodes"]] == ["UP", "UP", "UP"]
    lb.nodes[1].set_mode("refuse")
    wait_until(lambda: lb.status_json()[1]["clusters"][0]["nodes"][1]["state"] == "DOWN",
               timeout=BOUND + 2, message="HAProxy's view, not a stale status.json")

    haproxy = lb.daemon.haproxy_pid
    assert haproxy is not None
    kill_tree(haproxy)
    code, doc = lb.status_json()
    assert code == 3 and doc["haproxy"]["reachable"] is False
    sources = {p.split(":", 1)[0] for p in doc["unreachable"]}
    assert sources == {"daemon", "master socket", "admin socket"}
    assert {n["state"] for n in doc["clusters"][0]["nodes"]} == {"UNKNOWN"}


def get(port: int, path: str, source: str, auth: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(BALANCER, port, timeout=3.0, source_address=(source, 0))
    headers = {"Connection": "close"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_stats_page_allow_list_auth_and_prometheus(
        start_balancer: Callable[..., Balancer], short_tmp: Path) -> None:
    password = 's3cret:with"odd$chars'
    (short_tmp / "stats.pw").write_text(password + "\n")
    lb = start_balancer({"05-stats.toml": f"""\
        [stats]
        allow = ["127.0.8.0/24"]
        user = "admin"
        password_file = "{short_tmp / 'stats.pw'}"
        """})
    port = lb.config.stats_port
    assert password not in (lb.config.state_dir / "haproxy.cfg").read_text()
    # Outside the allow list: nothing but the readiness URL.
    assert get(port, "/stats", OTHER_SOURCE, f"admin:{password}")[0] == 403
    assert get(port, "/metrics", OTHER_SOURCE)[0] == 403
    assert get(port, "/healthz", OTHER_SOURCE)[0] == 200
    # Inside: basic auth for the page, with the password from the file.
    assert get(port, "/stats", ALLOWED_SOURCE)[0] == 401
    assert get(port, "/stats", ALLOWED_SOURCE, "admin:wrong")[0] == 401
    status, page = get(port, "/stats", ALLOWED_SOURCE, f"admin:{password}")
    assert status == 200 and b"be_cluster-0" in page
    assert lb.config.status_file()["haproxy"]["prometheus_exporter"] is True
    # HAProxy's /metrics is behind the same password as the page (it was open before).
    assert get(port, "/metrics", ALLOWED_SOURCE)[0] == 401
    status, metrics = get(port, "/metrics", ALLOWED_SOURCE, f"admin:{password}")
    assert status == 200
    names = {f.name for f in text_string_to_metric_families(metrics.decode())}
    assert "haproxy_backend_active_servers" in names


def daemon_metrics(lb: Balancer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = http_get(BALANCER, lb.config.metrics_port, "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def metric(lb: Balancer, name: str, **labels: str) -> float | None:
    return daemon_metrics(lb).get((name, tuple(sorted(labels.items()))))


def test_daemon_metrics_follow_applies_errors_and_health(
        start_balancer: Callable[..., Balancer]) -> None:
    lb = start_balancer()
    lb.wait_states(ALL_UP)
    wait_until(lambda: metric(lb, "haproxy_k8s_backend_servers", cluster="cluster-0",
                              state="UP") == 3, timeout=3.0)
    names = {name for name, _ in daemon_metrics(lb)}
    assert names >= {
        "haproxy_k8s_reloads_total", "haproxy_k8s_config_generation",
        "haproxy_k8s_last_apply_timestamp_seconds", "haproxy_k8s_config_errors_total",
        "haproxy_k8s_haproxy_restarts_total", "haproxy_k8s_backend_servers",
        "haproxy_k8s_runtime_changes_total"}
    assert metric(lb, "haproxy_k8s_config_generation") == 1
    assert (metric(lb, "haproxy_k8s_last_apply_timestamp_seconds") or 0) > time.time() - 60

    lb.config.write("20-fall.toml", "[defaults]\nfall = 3\n")  # structural: a reload
    wait_until(lambda: metric(lb, "haproxy_k8s_reloads_total", result="success") == 1,
               timeout=5.0, message="the reload is counted")
    assert metric(lb, "haproxy_k8s_config_generation") == 2
    lb.config.write("30-bad.toml", "[defaults]\nfall = 0\n")
    wait_until(lambda: metric(lb, "haproxy_k8s_config_errors_total") == 1, timeout=5.0,
               message="the config error is counted")
    lb.nodes[2].readyz_status = 500
    wait_until(lambda: metric(lb, "haproxy_k8s_backend_servers", cluster="cluster-0",
                              state="DOWN") == 1, timeout=BOUND + 2)
    assert metric(lb, "haproxy_k8s_backend_servers", cluster="cluster-0", state="UP") == 2

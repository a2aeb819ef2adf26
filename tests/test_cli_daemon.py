"""The operator CLI against the real daemon and HAProxy: status outputs and filters,
describe, events, diff, cordon/uncordon, maint --force, a node being removed."""

from __future__ import annotations

import datetime
import functools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, child_env, cli
from helpers import free_port, wait_until

from haproxy_k8s.daemon import control
from haproxy_k8s.daemon.health import FIRST_SEEN_DETAIL
from haproxy_k8s.daemon.inspect import FIRST_APPLY_NODES
from haproxy_k8s.daemon.status import StatusDocument, exit_code
from testkit.procs import stop_popen

pytestmark = pytest.mark.usefixtures("haproxy_bin")

LISTENER_HOST = "127.0.8.11"


@dataclass
class Running:
    config: ConfigDir
    daemon: DaemonProcess
    port: int  # the balancer's

    def run(self, *args: str) -> tuple[int, str]:
        result = cli(*args, "--config-dir", str(self.config.root))
        return result.returncode, result.stdout + result.stderr


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP backend that completes handshakes and never answers: sessions stay open.

    The TCP check passes on the handshake alone; nothing is ever accepted, so
    nothing in the test has to serve it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LISTENER_HOST, 0))
    sock.listen(128)
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def running(short_tmp: Path, standin_factory: StandInFactory,
            listener: socket.socket) -> Iterator[Running]:
    m1 = standin_factory("m1", tls=False)
    config = ConfigDir(short_tmp)
    port = free_port(BALANCER)
    config.cluster("cluster-0", port, {"m1": (m1.host, m1.port)})
    config.write("20-m2.toml", f'[clusters.cluster-0.nodes.m2]\naddress = "{LISTENER_HOST}"\n'
                 f"port = {listener.getsockname()[1]}\n")
    daemon = DaemonProcess(config).start()
    try:
        wait_until(lambda: Running(config, daemon, port).run("status")[0] == 0, 10.0,
                   message="both nodes UP")
        yield Running(config, daemon, port)
    finally:
        daemon.stop()


def event_lines(text: str, kind: str, obj: str, message: str) -> list[str]:
    """`events` lines (TIME KIND OBJECT MESSAGE) of this kind and object, with `message`."""
    return [line for line in text.splitlines()
            if line.split()[1:3] == [kind, obj] and message in line]


def node(status: dict[str, object], name: str) -> dict[str, object] | None:
    clusters = status["clusters"]
    assert isinstance(clusters, list)
    return next((n for n in clusters[0]["nodes"] if n["name"] == name), None)


def test_a_big_first_apply_and_first_read_are_summed_up(short_tmp: Path,
                                                        listener: socket.socket) -> None:
    """At 1,000 clusters the start logged 3,000 "added" and 3,000 "is UP" events."""
    config = ConfigDir(short_tmp)
    address = (LISTENER_HOST, listener.getsockname()[1])
    count = max(FIRST_APPLY_NODES, FIRST_SEEN_DETAIL) + 1
    config.cluster("cluster-0", free_port(BALANCER), {f"m{i}": address for i in range(count)})
    daemon = DaemonProcess(config).start()
    try:
        events = cli("events", "--config-dir", str(config.root)).stdout
        assert event_lines(events, "config", "config", f"{count} nodes in 1 cluster")
        assert event_lines(events, "health", "health", f"{count} nodes first seen: ")
        assert not [line for line in events.splitlines() if "cluster-0/m" in line]
    finally:
        daemon.stop()


def test_status_outputs_and_filters(running: Running) -> None:
    code, wide = running.run("status", "-o", "wide")
    assert code == 0, wide
    header = next(line for line in wide.splitlines() if line.startswith("CLUSTER"))
    assert header.split()[-7:] == ["WEIGHT", "ADMIN", "RATE", "CHECK", "DETAIL", "SOURCE",
                                   "ORIGIN"]
    m1 = next(line for line in wide.splitlines() if " m1 " in line)
    assert "100" in m1 and "ready" in m1 and "conf.d/10-cluster-0.toml" in m1
    code, text = running.run("status", "cluster-0/m2", "-o", "json")
    data = json.loads(text)
    assert code == 0 and [n["name"] for n in data["clusters"][0]["nodes"]] == ["m2"]
    assert data["clusters"][0]["nodes"][0]["origin"] == "conf.d/20-m2.toml"
    code, text = running.run("status", "-o", "yaml")
    assert code == 0 and yaml.safe_load(text)["clusters"][0]["total"] == 2
    code, text = running.run("status", "cluster-9")
    assert code == 4 and "cluster-9: no such cluster or node" in text
    # Global flags before the command work as well as after it.
    result = cli("--config-dir", str(running.config.root), "status", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["daemon"]["running"]


def test_cordon_describe_and_events(running: Running) -> None:
    code, out = running.run("cordon", "cluster-0/m1")
    assert code == 0 and "cluster-0/m1: drain" in out, out
    code, text = running.run("describe", "cluster-0/m1")
    assert code == 0, text
    assert "Origin:       conf.d/10-cluster-0.toml (clusters.cluster-0.nodes.m1)" in text
    line = next(x for x in text.splitlines() if x.startswith("Server line:  "))
    # Its own words and, after them, the checks its defaults section gives it.
    assert line.startswith("Server line:  server m1 127.0.8.10:") and " weight " in line, line
    assert " + default-server check inter " in line, line
    me = f"{pwd.getpwuid(os.geteuid()).pw_name} (uid {os.geteuid()})"
    assert f"Operator:     drain, drain by {me} at " in text
    assert " health    is UP" in text and " operator  drain by " in text
    code, data = running.run("describe", "cluster-0/m1", "-o", "json")
    described = json.loads(data)
    assert described["status"]["state"] == "DRAIN" and described["operator"]["state"] == "drain"
    assert running.run("uncordon", "cluster-0/m1")[0] == 0
    code, events = running.run("events")
    lines = events.splitlines()
    assert code == 0 and lines[0].split() == ["TIME", "KIND", "OBJECT", "MESSAGE"]
    assert any(" apply " in line and "start" in line for line in lines)
    assert event_lines(events, "operator", "cluster-0/m1", "ready by ")
    # The journal has the same words.
    assert "operator cluster-0/m1 drain by " in running.daemon.log_text()
    assert running.run("describe", "cluster-0/nope")[0] == 1


def test_events_follow_prints_new_events(running: Running) -> None:
    log = running.config.root / "follow.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "haproxy_k8s.cli", "events", "--follow", "--interval",
             "100ms", "--config-dir", str(running.config.root)],
            stdout=out, stderr=subprocess.STDOUT, env=child_env())
    try:
        wait_until(lambda: "TIME" in log.read_text(), 10.0, message="events header")
        assert running.run("drain", "cluster-0/m2")[0] == 0
        wait_until(lambda: event_lines(log.read_text(), "operator", "cluster-0/m2", "drain by"),
                   5.0, message="the drain, followed")
        proc.send_signal(signal.SIGINT)  # Ctrl-C ends --follow, with exit code 0
        assert proc.wait(timeout=10) == 0, log.read_text()
    finally:
        stop_popen(proc)


def test_maint_of_the_last_serving_node_needs_force(running: Running) -> None:
    assert running.run("maint", "cluster-0/m2")[0] == 0
    code, out = running.run("maint", "cluster-0/m1")
    assert code == 1 and "last serving node of cluster-0" in out and "--force" in out, out
    assert json.loads(running.run("status", "--json")[1])["clusters"][0]["up"] == 1
    code, out = running.run("maint", "cluster-0/m1", "--force")
    assert code == 0, out
    assert running.run("ready", "cluster-0/m1")[0] == 0


def test_a_removed_node_shows_draining_with_its_sessions_until_gone(
        running: Running, listener: socket.socket) -> None:
    clients = []
    try:
        def m2_busy() -> bool:
            clients.append(socket.create_connection((BALANCER, running.port), timeout=2.0))
            # One cluster: the daemon reads its sessions again (the whole document's
            # sessions are as of its last full read, up to 10 s here).
            found = node(json.loads(running.run("status", "cluster-0", "--json")[1]), "m2")
            return bool(found and found["sessions"])

        wait_until(m2_busy, 10.0, interval=0.1, message="a session on m2")
        running.config.remove("20-m2.toml")

        def removing() -> dict[str, object] | None:
            found = node(json.loads(running.run("status", "--json")[1]), "m2")
            return found if found and found["removing"] else None

        m2 = wait_until(removing, 10.0, message="m2 removing")
        assert m2["state"] == "DRAIN" and m2["sessions"]
        code, table = running.run("status")
        assert code == 0, table  # m1 is UP and m2 no longer counts
        assert "cluster-0 (1/1 up)" in table
        line = next(line for line in table.splitlines() if " m2 " in line)
        assert "DRAIN (removing)" in line
    finally:
        for client in clients:
            client.close()
        # Un-accepted connections are reset when the listener closes: the
        # backend side of m2's session ends too, not only the client side.
        listener.close()
    wait_until(lambda: node(json.loads(running.run("status", "--json")[1]), "m2") is None,
               15.0, message="m2 gone once its sessions ended")
    events = running.run("events")[1]
    assert event_lines(events, "config", "cluster-0/m2", "removed from the config")
    assert event_lines(events, "config", "cluster-0/m2", "deleted from HAProxy")


def history(running: Running, target: str) -> list[tuple[str, str]]:
    """(kind, message) of each event in `describe`'s history of `target`."""
    code, text = running.run("describe", target, "-o", "json")
    assert code == 0, text
    return [(e["kind"], e["message"]) for e in json.loads(text)["history"]]


def test_a_node_gone_leaves_no_history_behind(running: Running,
                                              listener: socket.socket) -> None:
    """Adds and removes of ever other nodes keep no history of the nodes gone:
    each added again describes only its new life; an operator's drain, which
    outlives the node, still says who set it."""
    port = listener.getsockname()[1]

    def node_file(name: str) -> str:
        return f'[clusters.cluster-0.nodes.{name}]\naddress = "{LISTENER_HOST}"\nport = {port}\n'

    def gone(name: str) -> bool:
        return node(json.loads(running.run("status", "--json")[1]), name) is None

    def present(name: str) -> bool:
        return not gone(name)

    names = [f"x{i}" for i in range(3)]
    for name in names:  # removed at runtime: drained, then deleted from HAProxy
        running.config.write(f"30-{name}.toml", node_file(name))
        wait_until(functools.partial(present, name), 10.0, message=f"{name} added")
        assert running.run("drain" if name == "x0" else "ready", f"cluster-0/{name}")[0] == 0
        running.config.remove(f"30-{name}.toml")
        wait_until(functools.partial(gone, name), 15.0, message=f"{name} deleted")
    # Removed by a reload (a structural change with it): never drained out.
    running.config.write("30-y.toml", node_file("y"))
    wait_until(functools.partial(present, "y"), 10.0, message="y added")
    running.config.remove("30-y.toml")
    running.config.write("40-balance.toml", '[clusters.cluster-0]\nbalance = "roundrobin"\n')
    wait_until(lambda: gone("y"), 15.0, message="y removed by the reload")
    for name in [*names, "y"]:
        running.config.write(f"30-{name}.toml", node_file(name))
    wait_until(lambda: not any(gone(name) for name in [*names, "y"]), 10.0,
               message="all added again")
    for name in [*names, "y"]:
        kinds = history(running, f"cluster-0/{name}")
        assert ("config", "removed from the config (draining until its sessions end)") \
            not in kinds, kinds
        assert [k for k in kinds if k[0] == "config"] == \
            [("config", f"added ({LISTENER_HOST}:{port} weight 100)")], kinds
    _, text = running.run("describe", "cluster-0/x0", "-o", "json")
    operator = json.loads(text)["operator"]
    assert operator["state"] == "drain" and operator["set"].startswith("drain by "), operator
    # `events` still lists what happened to them.
    events = running.run("events")[1]
    assert len(event_lines(events, "config", "cluster-0/x1", "deleted from HAProxy")) == 1
    assert " fo_" not in events  # fail-open twins are the node's business, not a line each


def test_diff_shows_the_plan_without_applying(short_tmp: Path,
                                              standin_factory: StandInFactory) -> None:
    m1, m2 = standin_factory("m1", tls=False), standin_factory("m2", tls=False)
    # Edits are never applied by themselves here: only `reload` would.
    config = ConfigDir(short_tmp, debounce="1h", extra_main='max_wait = "1h"\nsettle = "1h"\n')
    config.cluster("cluster-0", free_port(BALANCER), {"m1": (m1.host, m1.port)})
    daemon = DaemonProcess(config).start()
    try:
        def run(*args: str) -> tuple[int, str]:
            result = cli(*args, "--config-dir", str(config.root))
            return result.returncode, result.stdout + result.stderr

        code, out = run("diff")
        assert code == 0 and out.startswith("plan: noop"), out
        config.write("20-m2.toml", f'[clusters.cluster-0.nodes.m2]\naddress = "{m2.host}"\n'
                     f"port = {m2.port}\n")
        code, out = run("diff")
        assert code == 1 and out.startswith("plan: runtime (runtime: add cluster-0/m2)"), out
        assert f"+    server m2 {m2.host}:{m2.port} weight " in out
        config.write("30-balance.toml", '[clusters.cluster-0]\nbalance = "roundrobin"\n')
        code, out = run("diff")
        assert code == 1 and "plan: reload (structural change: clusters.cluster-0.balance)" \
            in out, out
        assert "+    balance roundrobin" in out
        config.write("40-bad.toml", "[clusters.cluster-0.nodes.m3]\nadress = \"x\"\n")
        code, out = run("diff")
        assert code == 2 and "conf.d/40-bad.toml" in out and "did you mean" in out, out
        assert daemon.generation() == 1  # nothing was applied
    finally:
        daemon.stop()
    # Without a daemon: against the published file, and says there is no plan.
    (config.conf_d / "40-bad.toml").unlink()
    result = cli("diff", "--config-dir", str(config.root))
    assert result.returncode == 1 and "no plan" in result.stdout, result.stdout + result.stderr


def test_status_without_permission_says_so(running: Running) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run the CLI as another user")
    result = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
         "haproxy_k8s.cli", "status", "--state-dir", str(running.config.state_dir)],
        capture_output=True, text=True, env=child_env(), timeout=30, check=False)
    assert result.returncode == 3
    assert "permission denied: run as root or haproxy" in result.stderr, result.stderr
    assert "NOT RUNNING" not in result.stdout


def test_status_watch_prints_again_on_a_change(running: Running) -> None:
    log = running.config.root / "watch.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "haproxy_k8s.cli", "status", "--watch", "--interval",
             "200ms", "cluster-0/m2", "--config-dir", str(running.config.root)],
            stdout=out, stderr=subprocess.STDOUT, env=child_env())
    try:
        wait_until(lambda: "healthy: every node is UP" in log.read_text(), 10.0,
                   message="the first table")
        assert running.run("drain", "cluster-0/m2")[0] == 0
        wait_until(lambda: "down: no UP node in cluster-0" in log.read_text(), 5.0,
                   message="the table again, after the drain")
        proc.send_signal(signal.SIGINT)  # Ctrl-C ends --watch
        assert proc.wait(timeout=10) is not None
    finally:
        stop_popen(proc)
    # Into a pipe each change is appended, not redrawn: two tables, no escape codes.
    text = log.read_text()
    assert text.count("CLUSTER ") == 2 and "\033[" not in text, text


def _stable(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without what moves by itself between two reads (ages, check times)."""
    nodes = [{k: v for k, v in n.items() if k not in ("last_change_s", "check", "rate")}
             for c in doc["clusters"] for n in c["nodes"]]
    daemon = {k: doc["daemon"][k] for k in ("pid", "running", "generation", "applied_at",
                                            "started_at", "config_dir")}
    return {"daemon": daemon, "haproxy": doc["haproxy"], "nodes": nodes,
            "unreachable": doc["unreachable"]}


def test_status_prints_the_document_the_daemon_holds(running: Running) -> None:
    socket_path = running.config.state_dir / "control.sock"
    held = control.call(socket_path, "document")["document"]
    code, text = running.run("status", "--json")
    assert code == 0, text
    assert _stable(json.loads(text)) == _stable(held)
    # Into a pipe the JSON is compact: one line.
    assert text.count("\n") == 1
    one = control.call(socket_path, "document", {"cluster": "cluster-0"})["document"]
    assert [c["name"] for c in one["clusters"]] == ["cluster-0"]
    # Only a configured name reaches HAProxy; anything else is no cluster at all.
    other = control.call(socket_path, "document", {"cluster": "x; shutdown sessions"})
    assert other["ok"] and other["document"]["clusters"] == []
    assert running.run("status", "--json")[0] == 0  # HAProxy took no command from it


def test_status_json_into_a_pipe_is_the_daemons_document_as_sent(running: Running) -> None:
    """Printed as the daemon sent it: the very text decoding and encoding it again
    gives, with the exit code its content calls for; a target or a table decodes it."""

    def check(expected_code: int) -> dict[str, Any]:
        code, text = running.run("status", "--json")
        doc = StatusDocument.from_json(json.loads(text))
        assert text == doc.dumps(None), "not what the document encodes to"
        assert code == exit_code(doc) == expected_code, text
        assert running.run("status")[0] == code  # the table, from the decoded document
        one_code, one = running.run("status", "cluster-0", "--json")
        assert one_code == code, one
        assert [c["name"] for c in json.loads(one)["clusters"]] == ["cluster-0"]
        data: dict[str, Any] = json.loads(text)
        return data

    check(0)
    assert running.run("maint", "cluster-0/m2")[0] == 0
    m2 = node(check(1), "m2")  # degraded: one node of two in maintenance
    assert m2 is not None and m2["state"] == "MAINT"


def test_without_the_daemon_status_reads_haproxy_itself(running: Running) -> None:
    # SIGKILL: the daemon cannot stop HAProxy on its way out, so HAProxy keeps serving.
    assert running.daemon.proc is not None
    running.daemon.signal(signal.SIGKILL)
    running.daemon.proc.wait(timeout=10)
    code, text = running.run("status", "--json")
    doc = json.loads(text)
    assert code == 3, text
    assert not doc["daemon"]["running"]
    assert any(u.startswith("daemon: not running") for u in doc["unreachable"])
    # The node states are HAProxy's own, read from its admin socket.
    assert doc["haproxy"]["reachable"]
    assert [n["state"] for n in doc["clusters"][0]["nodes"]] == ["UP", "UP"]
    code, text = running.run("status", "cluster-0/m1")
    assert code == 3 and " m1 " in text and "UP" in text, text
    assert running.run("status", "cluster-9")[0] == 4


def test_status_file_says_when_it_was_written(running: Running) -> None:
    """The daemon stamps status.json as it writes it (into the text it encoded
    once, unstamped, to see whether anything changed)."""
    daemon = running.daemon.status()["daemon"]
    written = datetime.datetime.fromisoformat(daemon["written_at"].replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.UTC) - written).total_seconds()) < 600
    assert daemon["applies"] >= 1

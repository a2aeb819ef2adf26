"""The one writer: CLI verbs ask the daemon through its control socket and get their
own request's outcome; without a daemon they say so and exit 3."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, cli
from helpers import free_port, wait_until

from haproxy_k8s.apply import operator as opstate
from haproxy_k8s.daemon import client, control
from haproxy_k8s.errors import RuntimeApiError

pytestmark = pytest.mark.usefixtures("haproxy_bin")


@pytest.fixture
def running(short_tmp: Path, standin_factory: StandInFactory) -> Iterator[ConfigDir]:
    nodes = [standin_factory(f"m{i}", tls=False) for i in (1, 2)]
    config = ConfigDir(short_tmp)
    config.cluster("cluster-0", free_port(BALANCER), {n.name: (n.host, n.port) for n in nodes})
    daemon = DaemonProcess(config).start()
    try:
        yield config
    finally:
        daemon.stop()


def run(config: ConfigDir, *args: str) -> tuple[int, str]:
    result = cli(*args, "--config-dir", str(config.root))
    return result.returncode, result.stdout + result.stderr


def test_control_socket_is_private(running: ConfigDir) -> None:
    mode = (running.state_dir / "control.sock").stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_reload_reports_its_own_outcome(running: ConfigDir) -> None:
    running.write("30-bad.toml", "[clusters.cluster-0.nodes.m9]\naddress = \"127.0.8.10\"\n"
                  "port = 70000\n")
    code, out = run(running, "reload")
    assert code == 1, out
    assert "conf.d/30-bad.toml" in out and "clusters.cluster-0.nodes.m9.port" in out
    (running.conf_d / "30-bad.toml").unlink()
    code, out = run(running, "reload")
    assert code == 0, out
    assert out.startswith("applied: ")


def test_structural_change_records_why_in_the_history(running: ConfigDir) -> None:
    running.write("40-balance.toml", '[clusters.cluster-0]\nbalance = "roundrobin"\n')
    why = "structural change: clusters.cluster-0.balance"

    def reloaded() -> list[dict[str, Any]]:
        history = running.status_file()["daemon"]["history"]
        return [e for e in history if e["action"] == "reload" and e["plan"] == why]

    entry = wait_until(reloaded, 5.0, message="a reload with its reason")[0]
    assert entry["reason"] == "files changed" and entry["ok"] is True
    code, out = run(running, "reload")  # nothing changed since: a no-op, recorded too
    assert code == 0 and "applied: noop" in out, out
    history = running.status_file()["daemon"]["history"]
    assert history[-1]["action"] == "noop" and len(history) <= 20
    code, table = run(running, "status")
    assert f"last:     reload ({why}) on files changed" in table


def test_drain_goes_through_the_daemon_and_is_recorded(running: ConfigDir) -> None:
    code, out = run(running, "drain", "cluster-0/m1")
    assert code == 0, out
    assert opstate.load(running.state_dir / "operator-state.json") == {"cluster-0/m1": "drain"}
    status = json.loads(run(running, "status", "--json")[1])
    m1 = next(n for n in status["clusters"][0]["nodes"] if n["name"] == "m1")
    assert m1["state"] == "DRAIN"
    assert run(running, "ready", "cluster-0/m1")[0] == 0
    assert opstate.load(running.state_dir / "operator-state.json") == {}


def test_an_unknown_node_is_refused_and_not_remembered(running: ConfigDir) -> None:
    code, out = run(running, "maint", "cluster-0/nope")
    assert code == 1 and "no such node" in out, out
    assert opstate.load(running.state_dir / "operator-state.json") == {}


def test_a_garbled_request_gets_an_error_not_a_hang(running: ConfigDir) -> None:
    with pytest.raises(RuntimeApiError):
        control.call(running.state_dir / "nope.sock", "reload", timeout=2.0)
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5.0)
        sock.connect(str(running.state_dir / "control.sock"))
        sock.sendall(b'{"op": "rm -rf"}\n')
        reply = json.loads(sock.recv(4096))
    assert reply["ok"] is False and "bad request" in reply["error"]


@pytest.mark.parametrize("verb", [("reload",), ("drain", "cluster-0/m1"),
                                  ("ready", "cluster-0/m1"), ("maint", "cluster-0/m1")])
def test_without_a_daemon_verbs_say_so_and_exit_3(short_tmp: Path, verb: tuple[str, ...]) -> None:
    config = ConfigDir(short_tmp)
    code, out = run(config, *verb)
    assert code == 3, out
    assert "no running daemon" in out


def test_a_second_daemon_on_the_same_state_dir_exits_naming_the_first(
        running: ConfigDir) -> None:
    first = (running.state_dir / "daemon.pid").read_text().strip()
    result = cli("run", "--config-dir", str(running.root), timeout=30)
    assert result.returncode == 1
    assert f"another haproxy-k8s daemon (pid {first}) already runs on" in result.stderr
    # The first daemon is untouched: its pid file, its HAProxy, its control socket.
    assert (running.state_dir / "daemon.pid").read_text().strip() == first
    code, out = run(running, "status")
    assert code == 0, out
    assert run(running, "reload")[0] == 0


def test_a_wrong_config_dir_touches_nothing(short_tmp: Path) -> None:
    for config_dir in (short_tmp / "missing", short_tmp / "empty"):
        (short_tmp / "empty" / "conf.d").mkdir(parents=True, exist_ok=True)
        result = cli("run", "--config-dir", str(config_dir), timeout=30)
        assert result.returncode == 1, result.stderr
    assert sorted(p.name for p in short_tmp.rglob("*")) == ["conf.d", "empty"]


def test_a_reply_of_megabytes_arrives_whole(short_tmp: Path) -> None:
    """A status document at thousands of nodes is one long line; requests stay capped."""
    nodes = [{"name": f"n{i}", "state": "UP"} for i in range(40_000)]

    def answer(request: control.Request) -> None:
        request.answer({"ok": True, "op": request.op, "nodes": nodes})

    server = control.ControlServer(short_tmp / "c.sock", answer)
    server.start()
    try:
        reply = control.call(short_tmp / "c.sock", "document", timeout=10.0)
    finally:
        server.stop()
    assert len(json.dumps(reply)) > 1 << 20
    assert reply["op"] == "document" and reply["nodes"] == nodes


def test_an_encoded_answer_arrives_as_sent_and_its_document_splits_off(short_tmp: Path) -> None:
    """The `document` reply is one JSON line for any reader, with its summary first,
    so `status --json` can take the document's bytes without decoding them."""
    document = json.dumps({"daemon": {"note": ',"document":{}'}, "clusters": []},
                          separators=(",", ":"))
    line = client.document_line({"ok": True, "exit_code": 2, "running": True}, document)

    def answer(request: control.Request) -> None:
        request.answer(line)

    server = control.ControlServer(short_tmp / "c.sock", answer)
    server.start()
    try:
        raw = control.call_raw(short_tmp / "c.sock", "document", timeout=10.0)
        decoded = control.call(short_tmp / "c.sock", "document", timeout=10.0)
    finally:
        server.stop()
    assert raw == line
    assert decoded == {"ok": True, "exit_code": 2, "running": True,
                       "document": json.loads(document)}
    assert client.split_document(raw) == ({"ok": True, "exit_code": 2, "running": True},
                                          document.encode())
    # An older daemon's reply, or an error: decoded whole by the caller.
    assert client.split_document(b'{"ok":true,"document":{"clusters":[]}}') is None
    assert client.split_document(b'{"ok":false,"error":"busy"}') is None

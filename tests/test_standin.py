"""The stand-in apiserver, driven over real sockets and TLS."""

from __future__ import annotations

import errno
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import pytest
from conftest import StandInFactory
from helpers import free_port, http_get, https_get, tcp_connect, wait_until

from haproxy_k8s.demo.certs import CertBundle, make_client_cert
from haproxy_k8s.demo.standin import StandIn

ROOT = Path(__file__).resolve().parents[1]


def _standin_threads(name: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"standin-{name}-")]


def _version(standin: StandIn, certs: CertBundle) -> dict[str, str]:
    status, body = https_get(standin.host, standin.port, "/version", ca_file=certs.ca_file)
    assert status == 200
    document: dict[str, str] = json.loads(body)
    return document


def _open_keepalive(standin: StandIn) -> ssl.SSLSocket:
    """A TLS connection that has completed one request and stays open."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((standin.host, standin.port), timeout=2.0)
    tls = context.wrap_socket(raw)
    assert _exchange(tls, "/livez") == (200, b"ok")
    return tls


def _exchange(conn: socket.socket, path: str) -> tuple[int, bytes]:
    """One request on an open keep-alive connection; reads exactly one response."""
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv_some(conn)
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["Content-Length"]):
        body += _recv_some(conn)
    return int(lines[0].split()[1]), body


def _recv_some(conn: socket.socket) -> bytes:
    chunk = conn.recv(4096)
    if not chunk:
        raise ConnectionError("server closed the connection mid-response")
    return chunk


def test_version_names_the_node_over_verified_tls(
    standin_factory: StandInFactory, certs: CertBundle
) -> None:
    m1, m2 = standin_factory("m1"), standin_factory("m2")
    assert (m1.host, m2.host) == ("127.0.8.10", "127.0.8.11")
    assert _version(m1, certs) == {
        "major": "1",
        "minor": "31",
        "gitVersion": "v1.31.0-standin",
        "platform": "linux/amd64",
        "node": "m1",
    }
    assert _version(m2, certs)["node"] == "m2"


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/readyz", 200, b"ok"),
        ("/livez", 200, b"ok"),
        ("/healthz", 200, b"ok"),
        ("/readyz?verbose", 200, b"ok"),
        ("/api/v1/pods", 404, b"404 page not found\n"),
    ],
)
def test_endpoints(
    standin_factory: StandInFactory, path: str, status: int, body: bytes
) -> None:
    standin = standin_factory()
    assert https_get(standin.host, standin.port, path) == (status, body)


def test_readyz_follows_readyz_status(standin_factory: StandInFactory) -> None:
    standin = standin_factory()
    standin.readyz_status = 500
    status, body = https_get(standin.host, standin.port, "/readyz")
    assert status == 500
    assert body.startswith(b"[-]") and b"readyz check failed" in body
    # A draining apiserver still reports itself alive.
    assert https_get(standin.host, standin.port, "/livez") == (200, b"ok")
    standin.readyz_status = 200
    assert https_get(standin.host, standin.port, "/readyz") == (200, b"ok")


def test_counts_connections_and_requests(standin_factory: StandInFactory) -> None:
    standin = standin_factory()
    for _ in range(3):
        https_get(standin.host, standin.port, "/readyz")
    https_get(standin.host, standin.port, "/version")
    assert tcp_connect(standin.host, standin.port)
    assert standin.requests == {"/readyz": 3, "/version": 1}
    assert standin.requests["/livez"] == 0
    # The acceptor may not have taken the last, request-less connection yet.
    wait_until(lambda: standin.connections == 5, message="five connections accepted")


def test_keepalive_serves_several_requests(standin_factory: StandInFactory) -> None:
    standin = standin_factory()
    with _open_keepalive(standin) as conn:
        assert _exchange(conn, "/readyz") == (200, b"ok")
        assert _exchange(conn, "/nope")[0] == 404
    assert standin.connections == 1


def test_plain_http_mode(standin_factory: StandInFactory) -> None:
    standin = standin_factory(tls=False)
    assert standin.url.startswith("http://")
    status, body = http_get(standin.host, standin.port, "/version")
    assert status == 200 and json.loads(body)["node"] == standin.name
    with pytest.raises(ssl.SSLError):
        https_get(standin.host, standin.port, "/version")


def test_source_address_is_used(standin_factory: StandInFactory) -> None:
    standin = standin_factory()
    assert https_get(standin.host, standin.port, "/readyz", source_address="127.0.9.1")[0] == 200


def test_hang_times_out_clients_until_serve(standin_factory: StandInFactory) -> None:
    standin = standin_factory()
    standin.set_mode("hang")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        https_get(standin.host, standin.port, "/readyz", timeout=0.3)
    assert time.monotonic() - started < 2.0
    assert tcp_connect(standin.host, standin.port), "hang still completes TCP handshakes"

    held = socket.create_connection((standin.host, standin.port), timeout=2.0)
    with held:
        wait_until(lambda: standin.connections == 3, message="connection accepted (and held)")
        standin.set_mode("serve")
        # The held connection is closed without an answer once the hang ends.
        assert held.recv(100) == b""
    assert https_get(standin.host, standin.port, "/readyz") == (200, b"ok")


def test_hang_applies_to_open_keepalive_connections(standin_factory: StandInFactory) -> None:
    standin = standin_factory()
    with _open_keepalive(standin) as conn:
        standin.set_mode("hang")
        conn.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.settimeout(0.3)
        with pytest.raises(TimeoutError):
            conn.recv(4096)
        wait_until(lambda: standin.requests["/readyz"] == 1, message="request was received")


def test_hung_connections_end_when_the_client_leaves(standin_factory: StandInFactory) -> None:
    standin = standin_factory()
    standin.set_mode("hang")
    for _ in range(3):
        with pytest.raises(TimeoutError):
            https_get(standin.host, standin.port, "/readyz", timeout=0.1)
    wait_until(lambda: standin.active_connections == 0, message="held connections released")


def test_refuse_then_serve_again_on_the_same_port(
    standin_factory: StandInFactory, certs: CertBundle
) -> None:
    standin = standin_factory()
    port = standin.port
    standin.set_mode("refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((standin.host, port), timeout=1.0).close()
    standin.set_mode("serve")
    assert standin.port == port
    assert _version(standin, certs)["node"] == standin.name


def test_refuse_drops_established_connections(standin_factory: StandInFactory) -> None:
    standin = standin_factory()
    with _open_keepalive(standin) as conn:
        standin.set_mode("refuse")
        # An abortive close (reset) is as good as an orderly one (EOF) here.
        with suppress(ConnectionResetError, ssl.SSLError):
            assert conn.recv(100) == b""
    wait_until(lambda: standin.active_connections == 0, message="connection dropped")


def test_client_cert_required(
    standin_factory: StandInFactory, certs: CertBundle, tmp_path: Path
) -> None:
    standin = standin_factory(require_client_cert=True)
    # TLS 1.3 reports the rejection on the first read, as a TLS alert or a reset.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        https_get(standin.host, standin.port, "/readyz", ca_file=certs.ca_file)
    client = make_client_cert(tmp_path, certs, "system:haproxy")
    answer = https_get(
        standin.host, standin.port, "/readyz", ca_file=certs.ca_file, client_cert=client
    )
    assert answer == (200, b"ok")


def test_require_client_cert_needs_certs() -> None:
    with pytest.raises(ValueError):
        StandIn("x", "127.0.8.10", 0, None, require_client_cert=True)


def test_stop_ends_threads_and_closes_every_socket(standin_factory: StandInFactory) -> None:
    standin = standin_factory("stopper")
    idle = _open_keepalive(standin)  # a handler blocked reading the next request
    standin.set_mode("hang")
    hung = socket.create_connection((standin.host, standin.port), timeout=2.0)
    wait_until(lambda: standin.active_connections == 2, message="both connections open")
    wait_until(lambda: len(_standin_threads("stopper")) == 3, message="acceptor + 2 handlers")

    started = time.monotonic()
    standin.stop()
    assert time.monotonic() - started < 2.0, "stop() waited for timeouts"
    assert _standin_threads("stopper") == []
    assert not standin.running
    assert not tcp_connect(standin.host, standin.port)
    with hung, idle:
        assert hung.recv(100) == b""
    standin.stop()  # idempotent


def test_restart_after_stop(standin_factory: StandInFactory, certs: CertBundle) -> None:
    standin = standin_factory()
    port = standin.port
    standin.stop()
    standin.start()
    assert standin.port == port
    assert _version(standin, certs)["node"] == standin.name
    with pytest.raises(RuntimeError):
        standin.start()


def test_taken_port_raises_oserror(certs: CertBundle) -> None:
    with socket.create_server(("127.0.8.10", 0)) as squatter:
        port = squatter.getsockname()[1]
        standin = StandIn("late", "127.0.8.10", port, certs)
        with pytest.raises(OSError, match=r"cannot listen on 127\.0\.8\.10") as caught:
            standin.start()
        assert caught.value.errno == errno.EADDRINUSE
        assert not standin.running


def test_context_manager(certs: CertBundle) -> None:
    with StandIn("ctx", "127.0.8.12", 0, certs) as standin:
        assert https_get(standin.host, standin.port, "/livez") == (200, b"ok")
    assert _standin_threads("ctx") == []


def test_set_mode_rejects_unknown_modes(standin_factory: StandInFactory) -> None:
    standin = standin_factory()
    with pytest.raises(ValueError, match="unknown mode"):
        standin.set_mode("sleep")  # type: ignore[arg-type]
    assert standin.mode == "serve"


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    host = "127.0.8.18"
    port = free_port(host)
    command = [
        sys.executable, "-m", "haproxy_k8s.demo.standin",
        "--name", "cli", "--host", host, "--port", str(port), "--cert-dir", str(tmp_path),
    ]  # fmt: skip
    with (tmp_path / "out.log").open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: tcp_connect(host, port), timeout=10.0, message="CLI stand-in listens")
        status, body = https_get(host, port, "/version", ca_file=tmp_path / "ca.crt")
        assert status == 200 and json.loads(body)["node"] == "cli"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "cli listening on https://127.0.8.18" in (tmp_path / "out.log").read_text()

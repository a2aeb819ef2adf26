"""Small test helpers: polling with a deadline, free ports, and real TCP/HTTP(S) clients.

Tests never sleep for a fixed time: they poll a condition with `wait_until`, so they are as
fast as the system allows and fail with a message that says what did not happen.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from testkit.load import RequestFailed
from testkit.ports import free_port as free_port

T = TypeVar("T")

_UNSET = object()


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 5.0,
    interval: float = 0.02,
    message: str = "",
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    An exception from `predicate` counts as "not yet" (a server still starting refuses
    connects); on timeout the last value or exception is reported.
    """
    deadline = time.monotonic() + timeout
    last_value: object = _UNSET
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
        except Exception as e:
            last_error = e
        else:
            if value:
                return value
            last_value, last_error = value, None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    what = message or getattr(predicate, "__name__", "condition")
    last = f"last error: {last_error!r}" if last_error else f"last value: {last_value!r}"
    raise AssertionError(f"{what}: not true within {timeout}s ({last})") from last_error


def tcp_connect(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to `host:port` is accepted (it is closed at once)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def https_get(
    host: str,
    port: int,
    path: str,
    timeout: float = 2.0,
    source_address: str | None = None,
    *,
    ca_file: Path | None = None,
    client_cert: Path | None = None,
    server_hostname: str | None = None,
) -> tuple[int, bytes]:
    """GET over TLS on a fresh connection; return status and body.

    Without `ca_file` the server certificate is not verified (like HAProxy's `verify none`);
    with it, the chain and the name (`server_hostname`, default `host`) are. `client_cert` is
    a combined cert+key PEM. Errors (refused, timeout, TLS failure) propagate as OSError.
    """
    context = _client_context(ca_file, client_cert)
    raw = socket.create_connection((host, port), timeout, source_address=_source(source_address))
    try:
        # The TLS handshake happens here, so a hung or refusing server fails in this call.
        tls = context.wrap_socket(raw, server_hostname=server_hostname or host)
    except BaseException:
        raw.close()
        raise
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = tls  # http.client uses a socket already set instead of connecting
    return _get(conn, path)


def http_get(
    host: str, port: int, path: str, timeout: float = 2.0, source_address: str | None = None
) -> tuple[int, bytes]:
    """GET over plain HTTP on a fresh connection; return status and body."""
    conn = http.client.HTTPConnection(
        host, port, timeout=timeout, source_address=_source(source_address)
    )
    return _get(conn, path)


def _client_context(ca_file: Path | None, client_cert: Path | None) -> ssl.SSLContext:
    if ca_file is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=str(ca_file))
    if client_cert is not None:
        context.load_cert_chain(client_cert)
    return context


def _source(address: str | None) -> tuple[str, int] | None:
    return (address, 0) if address else None


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


SYSTEM_PATH = "/usr/local/sbin:/usr/sbin:/usr/bin:/bin"


def require_tool(name: str, hint: str, sbin: str = SYSTEM_PATH) -> str:
    """Path of an external tool the tests need: a skip locally, a failure in CI.

    CI must never go green by skipping what it is meant to run. `sbin` is searched
    too: Debian puts haproxy in /usr/sbin, which a non-root PATH may not list.
    """
    path = shutil.which(name) or shutil.which(name, path=sbin)
    if path is None:
        message = f"{name} not found ({hint})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: required in CI")
        pytest.skip(message)
    return path


def node_of(port: int, host: str = "127.0.8.1") -> str:
    """Which stand-in answered a fresh TLS connection ("" when refused or closed).

    Python sends no SNI for an IP literal, like a kubeconfig with `server: https://IP`.
    """
    try:
        status, body = https_get(host, port, "/version", timeout=3)
    except OSError:
        return ""
    return str(json.loads(body)["node"]) if status == 200 else ""


def version_over_tls(port: int) -> Callable[[], str]:
    """One client request for the load: a fresh TLS connection, GET /version, expect 200.

    Returns the stand-in's name (its /version says which node answered).
    """
    def get() -> str:
        status, body = https_get("127.0.8.1", port, "/version", timeout=5.0)
        if status != 200:
            raise RequestFailed(f"HTTP {status}")
        try:
            return str(json.loads(body).get("node", ""))
        except ValueError:
            return ""

    return get

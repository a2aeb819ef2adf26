"""Socket and HTTP plumbing for the stand-in apiserver (standin.py has its behaviour).

An `Acceptor` owns a listening socket and the thread accepting on it; `RequestHandler`
serves one connection's keep-alive requests from a `Responder`; the helpers wake and hold
connections without closing them under the feet of the thread that uses them.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:  # certs needs cryptography (the demo extra); plain HTTP does not
    from .certs import CertBundle

log = logging.getLogger(__name__)

Address = tuple[Any, ...]  # (host, port) or the IPv6 4-tuple

# How soon a held (hang mode) connection notices that it should stop holding.
HOLD_POLL = 0.05


class Responder(Protocol):
    """What a `RequestHandler` asks of the stand-in."""

    @property
    def name(self) -> str: ...

    @property
    def mode(self) -> str: ...

    def respond(self, path: str) -> tuple[int, str, bytes]: ...

    def hold(self, conn: socket.socket) -> None: ...


class Acceptor:
    """A listening socket and the thread accepting on it, opened and closed as one.

    Closing a socket does not wake a thread blocked in accept() on it, so the thread polls
    the listener together with a wake-up socketpair that close() writes to.
    """

    def __init__(
        self,
        listener: socket.socket,
        on_accept: Callable[[socket.socket, Address], None],
        name: str,
    ) -> None:
        self._listener = listener
        self._on_accept = on_accept
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._listener, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        wake_fd = self._wake_r.fileno()
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if wake_fd in ready:
                return
            try:
                conn, address = self._listener.accept()
            except (BlockingIOError, ConnectionAbortedError):
                continue  # the client gave up between poll() and accept()
            except OSError as e:  # EMFILE and friends: back off instead of spinning
                log.warning("accept failed: %s", e)
                wait_readable(self._wake_r, 0.1)
                continue
            self._on_accept(conn, address)

    def close(self) -> None:
        self._wake_w.send(b"x")
        self._thread.join()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()


class RequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; answers come from `Responder.respond`."""

    protocol_version = "HTTP/1.1"
    server_version = "standin-apiserver"
    sys_version = ""

    def __init__(self, conn: socket.socket, address: Address, standin: Responder) -> None:
        # BaseRequestHandler.__init__ wants a socketserver server, which StandIn is not and
        # which it only stores; these are its three steps.
        self.standin = standin
        self.request = conn
        self.client_address = address
        self.setup()
        try:
            self.handle()
        finally:
            self.finish()

    def do_GET(self) -> None:
        status, content_type, body = self.standin.respond(urlsplit(self.path).path)
        if self.standin.mode == "hang":
            # Switched to hang while this keep-alive connection was open: never answer.
            self.close_connection = True
            self.standin.hold(self.connection)
            return
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("stand-in %s: %s " + format, self.standin.name, self.address_string(), *args)


def server_context(certs: CertBundle, require_client_cert: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certs.cert_file, certs.key_file)
    context.set_alpn_protocols(["http/1.1"])
    if require_client_cert:
        # Like kube-apiserver with --anonymous-auth=false and --client-ca-file.
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=certs.ca_file)
    return context


def shutdown_socket(conn: socket.socket) -> None:
    """Wake a thread blocked on `conn` (reads see EOF, writes fail) without closing it.

    socket.socket.shutdown is called directly because SSLSocket.shutdown also drops the TLS
    object under the feet of the thread still using it.
    """
    with contextlib.suppress(OSError):  # not connected any more: nothing to wake
        socket.socket.shutdown(conn, socket.SHUT_RDWR)


def wait_readable(sock: socket.socket, timeout: float) -> bool:
    # poll(), not select(): select() fails on descriptors above 1024 under load.
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def hold_connection(conn: socket.socket, holding: Callable[[], bool]) -> None:
    """Keep `conn` open without answering while `holding()`, discarding its input.

    Returns when `holding()` turns false or when the client gives up (EOF), so hung health
    checks do not pile up threads for the whole time a stand-in hangs.
    """
    conn.setblocking(False)
    while holding():
        if not wait_readable(conn, HOLD_POLL):
            continue
        try:
            if not conn.recv(4096):
                return
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            continue  # readable, but not a whole TLS record yet

"""A stand-in kube-apiserver for the demo, the tests and benchmarks.

It answers the few endpoints a load balancer cares about (`/readyz`, `/livez`, `/healthz`,
`/version`) over HTTPS or plain HTTP, and can be switched at runtime to misbehave the ways a
real apiserver does: `hang` (a stopped process: connects succeed, nothing answers) and
`refuse` (a dead process: connects are refused, open connections drop).

Threads: one acceptor per listening socket and one per connection, all daemon threads but
tracked, so `stop()` ends and joins every one of them. Connections are woken by shutting
their sockets down rather than by waiting for timeouts, which keeps `stop()` prompt.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading
from collections import Counter
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Literal, Self, cast

from .serving import (
    Acceptor,
    Address,
    RequestHandler,
    hold_connection,
    server_context,
    shutdown_socket,
)

if TYPE_CHECKING:  # certs needs cryptography (the demo extra); plain HTTP does not
    from .certs import CertBundle

log = logging.getLogger(__name__)

Mode = Literal["serve", "hang", "refuse"]
MODES: tuple[Mode, ...] = ("serve", "hang", "refuse")

# A client that goes silent mid-request cannot pin a handler thread longer than this.
IO_TIMEOUT = 5.0
# Handlers are woken by shutdown(), so this only bounds a stop() that went wrong.
JOIN_TIMEOUT = 5.0

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


class StandIn:
    """One stand-in apiserver listening on `host:port` (port 0 picks a free one)."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        certs: CertBundle | None,
        *,
        require_client_cert: bool = False,
    ) -> None:
        if require_client_cert and certs is None:
            raise ValueError("require_client_cert needs certs (a CA to verify clients against)")
        self.name = name
        self.host = host
        self.port = port
        self.certs = certs
        self.readyz_status = 200  # what GET /readyz answers; tests flip it to fail checks
        self._tls = server_context(certs, require_client_cert) if certs else None
        self._mode: Mode = "serve"
        self._control = threading.Lock()  # serialises start / stop / set_mode
        self._lock = threading.Lock()  # guards the counters, _conns and _threads
        self._conns: dict[threading.Thread, socket.socket] = {}  # open connections
        # Handler threads, kept past their leaving _conns: a thread is still alive for a
        # moment after it closes its socket, and stop() must join it all the same.
        self._threads: set[threading.Thread] = set()
        self._connections = 0
        self._requests: Counter[str] = Counter()
        self._acceptor: Acceptor | None = None
        self._stopping = threading.Event()
        self._running = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Listen and serve; raises OSError when the address cannot be bound."""
        with self._control:
            if self._running:
                raise RuntimeError(f"stand-in {self.name} is already running")
            self._stopping.clear()
            if self._mode != "refuse":
                self._open_listener()
            self._running = True

    def stop(self) -> None:
        """Close the listener and every connection, and join all threads. Idempotent."""
        with self._control:
            if not self._running:
                return
            self._running = False
            self._stopping.set()
            self._close_listener()
            self._drop_connections()
            with self._lock:
                threads, self._threads = self._threads, set()
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                log.warning("stand-in %s: %s did not end after stop()", self.name, thread.name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_mode(self, mode: Mode) -> None:
        """Switch between `serve`, `hang` and `refuse`; effective when this returns."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        with self._control:
            previous, self._mode = self._mode, mode
            if not self._running or mode == previous:
                return
            if mode == "refuse":
                # A dead apiserver: new connects get RST and established ones drop.
                self._close_listener()
                self._drop_connections()
            elif previous == "refuse":
                try:
                    self._open_listener()
                except OSError:
                    self._mode = previous
                    raise
            # hang <-> serve needs nothing here: handlers look at the mode themselves.

    # -- observation -----------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def running(self) -> bool:
        return self._running

    @property
    def connections(self) -> int:
        """Connections accepted since construction (every mode but refuse accepts)."""
        with self._lock:
            return self._connections

    @property
    def active_connections(self) -> int:
        """Connections open right now, hung ones included."""
        with self._lock:
            return len(self._conns)

    @property
    def requests(self) -> Counter[str]:
        """A snapshot of requests received per path (hung requests count too)."""
        with self._lock:
            return Counter(self._requests)

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def version(self) -> dict[str, str]:
        """The `/version` document; `node` tells a client which backend answered."""
        return {
            "major": "1",
            "minor": "31",
            "gitVersion": "v1.31.0-standin",
            "platform": "linux/amd64",
            "node": self.name,
        }

    # -- listening -------------------------------------------------------------------------

    def _open_listener(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            # create_server sets SO_REUSEADDR, so re-opening after `refuse` is not blocked by
            # connections of the previous listener lingering in TIME_WAIT.
            listener = socket.create_server((self.host, self.port), family=family, backlog=128)
        except OSError as e:
            raise OSError(
                e.errno, f"stand-in {self.name}: cannot listen on {self.host}:{self.port}: "
                f"{e.strerror}"
            ) from e
        listener.setblocking(False)
        self.port = listener.getsockname()[1]  # the real port when 0 was asked for
        self._acceptor = Acceptor(listener, self._on_accept, f"standin-{self.name}-accept")

    def _close_listener(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            self._acceptor = None

    def _on_accept(self, conn: socket.socket, address: Address) -> None:
        # Whether to hang is decided here, not in the new thread, so that once `connections`
        # counts a connection accepted in hang mode, it is certain to be held.
        hang = self._mode == "hang"
        thread = threading.Thread(
            target=self._serve_connection,
            args=(conn, address, hang),
            name=f"standin-{self.name}-conn",
            daemon=True,
        )
        # Registered before it runs, so a stop() racing with it still finds the socket.
        with self._lock:
            self._connections += 1
            self._conns[thread] = conn
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)
        thread.start()

    def _drop_connections(self) -> None:
        """Shut every open connection down, which wakes the thread serving it."""
        with self._lock:
            for conn in self._conns.values():
                shutdown_socket(conn)

    # -- one connection --------------------------------------------------------------------

    def _serve_connection(self, conn: socket.socket, address: Address, hang: bool) -> None:
        me = threading.current_thread()
        try:
            conn.settimeout(IO_TIMEOUT)
            if hang:
                # A stopped apiserver's kernel still completes the TCP handshake, but nothing
                # answers, not even the TLS handshake.
                self.hold(conn)
                return
            RequestHandler(self._secure(conn, me), address, self)
        except OSError as e:  # resets, timeouts, TLS failures: the client's problem
            log.debug("stand-in %s: connection from %s ended: %s", self.name, address, e)
        finally:
            with self._lock:
                current = self._conns.pop(me, conn)
            current.close()

    def _secure(self, conn: socket.socket, me: threading.Thread) -> socket.socket:
        if self._tls is None:
            return conn
        # Wrapping detaches `conn`; swap the registered socket under the lock so that
        # _drop_connections never shuts down a detached one.
        with self._lock:
            tls_conn = self._tls.wrap_socket(
                conn, server_side=True, do_handshake_on_connect=False
            )
            self._conns[me] = tls_conn
        tls_conn.do_handshake()
        return tls_conn

    def hold(self, conn: socket.socket) -> None:
        """Keep `conn` open without answering while in hang mode (and not stopping)."""
        hold_connection(conn, lambda: self._mode == "hang" and not self._stopping.is_set())

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for a GET of `path`; counts the request."""
        with self._lock:
            self._requests[path] += 1
        if path == "/readyz":
            status = self.readyz_status
            if status == 200:
                return status, TEXT, b"ok"
            body = f"[-]standin failed: readyz_status is {status}\nreadyz check failed\n"
            return status, TEXT, body.encode()
        if path in ("/livez", "/healthz"):
            return 200, TEXT, b"ok"
        if path == "/version":
            return 200, JSON, json.dumps(self.version(), indent=2).encode()
        return 404, TEXT, b"404 page not found\n"


# -- command line ------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m haproxy_k8s.demo.standin",
        description="Run one stand-in kube-apiserver until SIGTERM or SIGINT.",
    )
    parser.add_argument("--name", default="standin", help="reported as `node` by /version")
    parser.add_argument("--host", default="127.0.8.10")
    parser.add_argument("--port", type=int, default=6443, help="0 picks a free port")
    parser.add_argument(
        "--cert-dir",
        type=Path,
        help="serve HTTPS with a certificate made here (its CA is reused if present); "
        "without it, plain HTTP",
    )
    parser.add_argument("--require-client-cert", action="store_true")
    parser.add_argument("--readyz-status", type=int, default=200)
    parser.add_argument("--mode", choices=MODES, default="serve")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    certs = None
    if args.cert_dir:
        from .certs import make_certs

        certs = make_certs(args.cert_dir, [args.host, "localhost"], args.name)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()  # only post: the main thread does the work

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    standin = StandIn(
        args.name, args.host, args.port, certs, require_client_cert=args.require_client_cert
    )
    standin.readyz_status = args.readyz_status
    try:
        standin.start()
    except OSError as e:
        print(e, file=sys.stderr)
        return 1
    try:
        standin.set_mode(cast(Mode, args.mode))
        print(f"{standin.name} listening on {standin.url}", flush=True)
        stop.wait()
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

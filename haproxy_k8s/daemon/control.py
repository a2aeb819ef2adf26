"""The daemon's control socket: how CLI verbs ask the one writer to act.

`haproxy-k8s reload|drain|ready|maint` connect to `control.sock` in the state
dir (mode 0600: whoever may run HAProxy's admin commands), send one JSON line
and read one JSON line back. The server thread only *posts* each request to
the main loop and waits for the loop's answer, so every change to HAProxy is
still made by the loop, one at a time, and each caller gets the outcome of
its own request, not a counter that someone else's apply may have moved.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The client side, here too for the verbs that import it from this module.
from .client import ANSWER_TIMEOUT, MAX_REPLY, call, call_raw, read_reply

__all__ = ["ANSWER_TIMEOUT", "MAX_REPLY", "call", "call_raw", "read_reply"]

log = logging.getLogger(__name__)

THREAD_NAME = "haproxy-k8s-control"
MAX_REQUEST = 64 * 1024
IO_TIMEOUT = 5.0  # a client that connects and says nothing is dropped after this
OPS = ("reload", "drain", "ready", "maint", "describe", "events", "diff", "status", "document")
# Ops that change nothing: answering them is no news for status.json.
READ_ONLY_OPS = ("describe", "events", "diff", "status", "document")


@dataclass
class Request:
    """One control request, answered by the main loop through `answer`."""

    op: str
    args: dict[str, Any] = field(default_factory=dict)
    peer: str = ""  # who asked: "root (uid 0)", from the socket's peer credentials
    _reply: dict[str, Any] | bytes | None = None
    _done: threading.Event = field(default_factory=threading.Event)

    def answer(self, reply: dict[str, Any] | bytes) -> None:
        """Answer with a reply to encode, or with one already encoded (a line of
        JSON without its newline: the status document, put together from kept texts)."""
        self._reply = reply
        self._done.set()

    def wait(self, timeout: float) -> dict[str, Any] | bytes:
        if not self._done.wait(timeout):
            return {"ok": False, "error": f"the daemon did not answer within {timeout:g}s"}
        assert self._reply is not None
        return self._reply


class ControlServer:
    """Accepts requests on a unix socket; `post(request)` hands them to the loop."""

    def __init__(self, path: Path, post: Callable[[Request], None]) -> None:
        self.path = path
        self._post = post
        self._sock: socket.socket | None = None
        self._wake: tuple[int, int] | None = None  # a pipe: stop() wakes the thread with it
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self._stop.clear()  # started again after a stop (a recreated state dir)
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Created 0600 from the start: no window in which others could connect.
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(16)
        # No timeout to wake for: the thread sleeps until a client or stop() (the
        # wake pipe) comes. Waking 5 times a second was a third of an idle daemon.
        sock.setblocking(False)
        self._wake = os.pipe()
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._wake is not None:
            os.write(self._wake[1], b"x")
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        assert self._sock is not None and self._wake is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            selector.register(self._wake[0], selectors.EVENT_READ)
            while not self._stop.is_set():
                selector.select()
                if self._stop.is_set():
                    return
                try:
                    conn, _ = self._sock.accept()
                except BlockingIOError:
                    continue  # the client gave up between select and accept
                except OSError:
                    log.exception("control socket failed")
                    return
                conn.setblocking(True)
                with conn:
                    self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(IO_TIMEOUT)
        try:
            request = parse_request(_read_line(conn))
        except (OSError, ValueError) as e:
            _send(conn, {"ok": False, "error": f"bad request: {e}"})
            return
        request.peer = peer_name(conn)
        self._post(request)
        _send(conn, request.wait(ANSWER_TIMEOUT))


def peer_name(conn: socket.socket) -> str:
    """The connecting user, for the record of who drained a node (Linux SO_PEERCRED)."""
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return ""
    _, uid, _ = struct.unpack("3i", creds)
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def parse_request(line: bytes) -> Request:
    data = json.loads(line)
    if not isinstance(data, dict) or data.get("op") not in OPS:
        raise ValueError(f"expected {{\"op\": one of {', '.join(OPS)}}}")
    args = data.get("args") or {}
    if not isinstance(args, dict):
        raise ValueError("args must be an object")
    return Request(str(data["op"]), args)


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too long")
    return data.split(b"\n", 1)[0]


def _send(conn: socket.socket, reply: dict[str, Any] | bytes) -> None:
    # Compact: a status document is a megabyte at 3,000 nodes; the C encoder
    # writes it in one pass either way, but the client reads less.
    line = reply if isinstance(reply, bytes) \
        else json.dumps(reply, separators=(",", ":")).encode()
    with contextlib.suppress(OSError):  # the client gave up: nothing to tell
        conn.sendall(line)
        conn.sendall(b"\n")  # apart: `line + b"\n"` would copy a megabyte

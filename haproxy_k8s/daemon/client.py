"""The CLI's side of the control socket (daemon/control.py is the daemon's).

Apart from control.py so that `haproxy-k8s status` imports json and socket
only: the server's threads, selectors and logging were a tenth of its start.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from ..errors import RuntimeApiError

ANSWER_TIMEOUT = 120.0  # the loop answers after the apply: a reload may take a while
# A reply may be the whole status document: about 300 bytes per node, so a
# megabyte at 3,000 nodes. The cap only stops a runaway peer.
MAX_REPLY = 256 * 1024 * 1024
REPLY_CHUNK = 256 * 1024

# The `document` reply puts its summary first and the document last, as
# `{"ok":…,"exit_code":…,…,"document":{…}}`: one JSON line for any reader, and
# `status --json` can copy the document's bytes out without decoding them.
DOCUMENT_KEY = b',"document":'


def call(path: Path, op: str, args: dict[str, Any] | None = None,
         timeout: float = ANSWER_TIMEOUT) -> dict[str, Any]:
    """Send one request to the daemon and return its reply.

    Raises RuntimeApiError when no daemon listens on `path`.
    """
    line = call_raw(path, op, args, timeout)
    try:
        reply: dict[str, Any] = json.loads(line)
    except ValueError as e:  # cut short: the daemon ended while answering
        raise RuntimeApiError(f"the daemon's answer is not JSON: {e}") from e
    return reply


def call_raw(path: Path, op: str, args: dict[str, Any] | None = None,
             timeout: float = ANSWER_TIMEOUT) -> bytes:
    """call(), the reply as the daemon sent it: one line of JSON, not decoded."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except OSError as e:
            raise RuntimeApiError(f"no running daemon ({path}: {e.strerror or e})") from e
        sock.sendall(json.dumps({"op": op, "args": args or {}}).encode() + b"\n")
        line = read_reply(sock)
    except TimeoutError as e:
        raise RuntimeApiError(f"the daemon did not answer within {timeout:g}s") from e
    except (OSError, ValueError) as e:
        raise RuntimeApiError(f"control socket {path}: {e}") from e
    finally:
        sock.close()
    if not line:
        raise RuntimeApiError("the daemon closed the control socket without an answer")
    return line


def read_reply(sock: socket.socket) -> bytes:
    """One reply line, however long (up to MAX_REPLY).

    Chunks are kept in a list and only the newest is searched for the end:
    appending to one bytes object and searching all of it each time was
    quadratic in a reply of a megabyte.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(REPLY_CHUNK)
        if not chunk:
            break
        end = chunk.find(b"\n")
        if end >= 0:
            chunks.append(chunk[:end])
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REPLY:
            raise ValueError("reply too long")
    return b"".join(chunks)


def document_line(head: dict[str, Any], document: str) -> bytes:
    """The `document` reply: `head`'s fields, then the document's compact JSON text."""
    # One join: each `+` of the megabyte document would copy it again.
    return b"".join((json.dumps(head, separators=(",", ":"))[:-1].encode(), DOCUMENT_KEY,
                     document.encode(), b"}"))


def split_document(line: bytes) -> tuple[dict[str, Any], bytes] | None:
    """A `document` reply's summary fields and the document's JSON bytes.

    None when the reply is not of that shape (an older daemon, or an error):
    the caller decodes it whole. The summary's values are numbers and
    booleans, so the first DOCUMENT_KEY is the document's.
    """
    at = line.find(DOCUMENT_KEY)
    if at < 0 or not line.endswith(b"}"):
        return None
    try:
        head = json.loads(line[:at] + b"}")
    except ValueError:
        return None
    if not isinstance(head, dict) or "exit_code" not in head:
        return None
    return head, line[at + len(DOCUMENT_KEY):-1]

"""The daemon's live status document: asking for it, and taking it as it came.

Light on imports on purpose: `status --json` into a pipe needs nothing else
when the daemon answers (the document model, config loader and HAProxy
clients are for the table and for reading HAProxy without a daemon).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..daemon.client import call_raw, split_document

if TYPE_CHECKING:
    from ..haproxy.paths import StatePaths

# The loop answers between events; an apply in progress may hold it this long.
ASK_TIMEOUT = 3.0


def ask(paths: StatePaths, cluster: str | None = None) -> bytes:
    """The daemon's `document` reply line, not decoded (RuntimeApiError: no answer)."""
    args = {} if cluster is None else {"cluster": cluster}
    return call_raw(paths.control_socket, "document", args, timeout=ASK_TIMEOUT)


def as_sent(line: bytes) -> tuple[bytes, int] | None:
    """The document's compact JSON (with a newline) and the exit code, straight
    from a reply; None when the CLI must decode it (or read HAProxy itself).

    A document the daemon could not fill (HAProxy out of its reach) is not
    printed as it came: `status` then reads HAProxy's sockets, to say which
    one is missing.
    """
    split = split_document(line)
    if split is None:
        return None
    head, document = split
    if head.get("ok") is not True or head.get("running") is not True \
            or head.get("reachable") is not True or not isinstance(head.get("exit_code"), int):
        return None
    return document + b"\n", int(head["exit_code"])

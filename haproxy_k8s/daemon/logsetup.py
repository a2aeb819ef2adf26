"""Logging for the daemon and the CLI: one line per event, level first.

Under systemd with stderr connected to the journal, lines carry a syslog priority prefix
(`<3>ERROR haproxy_k8s.daemon: …`, the SD_ERR style of sd-daemon.h) and no timestamp: journald
parses the prefix into the entry's PRIORITY and stamps every entry itself. Elsewhere:
`2026-11-26T04:55:00Z INFO haproxy_k8s.daemon: message`, in UTC.

A traceback, or a message that contains line breaks, continues on lines indented by two
spaces; under the journal each of them carries the event's priority, so `journalctl -p err`
shows a failure with its whole traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TextIO

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# syslog(3) priorities, as the journal reads them from a `<N>` line prefix.
_SYSLOG_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
                    (logging.INFO, 6))
_DEBUG_PRIORITY = 7


class _Handler(logging.StreamHandler[TextIO]):
    """Our handler's own type, so that a second setup_logging() call can find and replace it."""


class LineFormatter(logging.Formatter):
    """`<time> LEVEL logger: message`, or `<N>LEVEL logger: message` for the journal."""

    def __init__(self, journal: bool = False) -> None:
        fmt = "%(levelname)s %(name)s: %(message)s"
        super().__init__(fmt if journal else "%(asctime)s " + fmt, datefmt="%Y-%m-%dT%H:%M:%SZ")
        self.converter = time.gmtime
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        first, *rest = super().format(record).splitlines() or [""]
        lines = [first, *(f"  {line}" for line in rest)]
        if self.journal:
            # journald applies a <N> prefix to its own line only: repeat it on each one.
            prefix = f"<{syslog_priority(record.levelno)}>"
            lines = [prefix + line for line in lines]
        return "\n".join(lines)


def syslog_priority(levelno: int) -> int:
    """The syslog priority for a logging level (custom levels round down to the next one)."""
    for threshold, priority in _SYSLOG_PRIORITY:
        if levelno >= threshold:
            return priority
    return _DEBUG_PRIORITY


def logs_to_journal(stream: TextIO) -> bool:
    """True when `stream` is the journal stream systemd set up for this service.

    systemd exports JOURNAL_STREAM=<device>:<inode> of that stream; comparing it with the
    actual file descriptor (as systemd.exec(5) advises) avoids the journal format when
    stderr was redirected, or when JOURNAL_STREAM was merely inherited, e.g. by a shell in a
    terminal started from a systemd user session.
    """
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):
        # No fd (a StringIO), a closed stream, or a malformed value: not the journal.
        return False


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every logger's records at `level` and above to `stream` (default stderr).

    Idempotent: a second call replaces the handler the first one installed, so the CLI and
    tests can call it freely without duplicating lines.
    """
    try:
        levelno = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}") from None
    out = sys.stderr if stream is None else stream
    handler = _Handler(out)
    handler.setFormatter(LineFormatter(journal=logs_to_journal(out)))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levelno)

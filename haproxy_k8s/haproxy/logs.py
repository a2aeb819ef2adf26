"""Which backend an HAProxy log message is about: the health view's news feed.

HAProxy sends its log messages to a unix datagram socket the daemon owns
(`log <state_dir>/log.sock local0 notice` in global, `log global` in each
backend; templates/haproxy.cfg.j2). A server's state change is one message
the moment it happens, e.g. (captured from 2.6.12):

    <129>Nov 28 05:57:20 haproxy[832]: Server be_a/n1 is DOWN, reason: Layer4
    connection problem, info: "Connection refused", check duration: 0ms. ...
    <133>Nov 28 05:57:21 haproxy[832]: Server be_a/n1 was DOWN and now enters maintenance.
    <128>Nov 28 05:57:20 haproxy[832]: backend be_a has no server available!

Pure. Only *which* backend is taken from the text; its servers' states are
then read from the admin socket, so a reworded message in another HAProxy
version costs freshness (the slow full poll still reconciles), never truth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 3164 header as HAProxy writes it: <PRI>timestamp host? tag[pid]: message
_HEADER = re.compile(r"^<(\d{1,3})>.*?\]: ")
_ABOUT = (
    # "Backup Server …": a backup node, or a fail-open twin.
    re.compile(r"^(?:Backup )?Server (?P<backend>[^/\s]+)/(?P<server>\S+) "),
    re.compile(r"^Health check for (?:backup )?server (?P<backend>[^/\s]+)/(?P<server>\S+) "),
    re.compile(r"^(?:backend|Backend) '?(?P<backend>[^'\s]+)'? has no server available"),
)


@dataclass(frozen=True)
class LogMessage:
    severity: int  # syslog severity: 0 emerg … 7 debug
    text: str
    backend: str | None = None  # the backend whose servers the message is about
    server: str | None = None


def parse_log(datagram: bytes) -> LogMessage | None:
    """One datagram from HAProxy; None when it is not a syslog line."""
    line = datagram.decode("utf-8", "replace").strip()
    match = _HEADER.match(line)
    if match is None:
        return None
    severity = int(match.group(1)) % 8
    text = line[match.end():]
    for pattern in _ABOUT:
        about = pattern.match(text)
        if about is not None:
            groups = about.groupdict()
            return LogMessage(severity, text, groups["backend"], groups.get("server"))
    return LogMessage(severity, text)

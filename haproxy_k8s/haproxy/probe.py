"""Is HAProxy really serving? Listening frontends, and the stats page answering.

Used once per start before the daemon reports READY: `systemctl start`
returning (and units ordered after ours starting) must mean every endpoint
answers. Frontends are checked in the kernel's socket table rather than by
connecting, because a connection to a TCP frontend would be forwarded to an
apiserver.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from pathlib import Path

from ..config.model import Bind
from . import sockdiag

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column
_WILDCARDS = {"0.0.0.0", "::"}


def listening_sockets(proc_net: Path | None = None) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket in this network namespace:
    from the kernel's sock_diag, else (or given `proc_net`) from /proc/net/tcp*."""
    found: set[tuple[str, int]] = set()
    if proc_net is None:
        for family in (socket.AF_INET, socket.AF_INET6):
            sockets = sockdiag.listening(family)
            if sockets is None:
                return listening_sockets(Path("/proc/net"))
            found |= sockets
        return found
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            lines = (proc_net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _LISTEN:
                found.add(_decode(fields[1], family))
    return found


def _decode(local: str, family: int) -> tuple[str, int]:
    """`0100007F:1A0B` → ("127.0.0.1", 6667): /proc prints addresses in host order words."""
    hex_addr, hex_port = local.split(":")
    raw = bytes.fromhex(hex_addr)
    # Each 32-bit word is in host (little-endian) byte order.
    swapped = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(family, swapped), int(hex_port, 16)


def not_listening(binds: Iterable[Bind], sockets: set[tuple[str, int]]) -> list[Bind]:
    """The binds no listening socket serves (a wildcard listener serves them all)."""
    ports = {port for host, port in sockets if host in _WILDCARDS}
    missing = []
    for bind in binds:
        host = _normal(bind.host)
        if (host, bind.port) in sockets or bind.port in ports:
            continue
        missing.append(bind)
    return missing


def _normal(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def http_answers(bind: Bind, path: str, timeout: float = 2.0) -> str | None:
    """None when an HTTP server answers `GET path` on `bind` (any status), else why not.

    A 401 or 403 is an answer: the stats page may rightly refuse us. Only the
    status line and headers are read: at 1,000 clusters the stats page is
    megabytes, and reading it made a start 0.4 s slower.
    """
    import http.client  # here: with ssl and email, 20 ms a start need not wait for

    conn = http.client.HTTPConnection(bind.host, bind.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        conn.getresponse()
    except (OSError, http.client.HTTPException) as e:
        return f"http://{bind}{path}: {e}"
    finally:
        conn.close()
    return None

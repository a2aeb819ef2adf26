"""The TCP sockets listening in this network namespace, asked of the kernel over
netlink (sock_diag, what `ss -ltn` uses).

/proc/net/tcp lists every TCP socket: a balancer with thousands of client
connections (or a machine full of TIME_WAIT) made one read of it cost up to a
second of kernel time. A sock_diag dump filtered to the LISTEN state walks the
listening sockets only.
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states; then inet_diag_sockid:
# sport, dport (big-endian), src[16], dst[16], interface, cookie[2].
_REQ_HEAD = struct.Struct("=BBBBI")
_SOCKID_LEN = 48
# inet_diag_msg: family, state, timer, retrans; sockid (sport, dport, src, dst, ...).
_MSG_HEAD = struct.Struct("=BBBB")
_PORTS = struct.Struct(">HH")
_TIMEOUT = 2.0


def listening(family: int) -> set[tuple[str, int]] | None:
    """(address, port) of each listening TCP socket of `family`; None if netlink
    cannot tell (then the caller reads /proc)."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                           NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(_TIMEOUT)
            nl.sendall(_request(family))
            return _read_dump(nl, family)
    except (OSError, ValueError, struct.error):
        return None


def _request(family: int) -> bytes:
    body = _REQ_HEAD.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN) \
        + bytes(_SOCKID_LEN)
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY,
                            NLM_F_REQUEST | NLM_F_DUMP, 1, os.getpid())
    return header + body


def _read_dump(nl: socket.socket, family: int) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    size = 4 if family == socket.AF_INET else 16
    while True:
        data = nl.recv(1 << 16)
        if not data:
            raise ValueError("netlink closed the dump")
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
            if kind == NLMSG_DONE:
                return found
            if kind == NLMSG_ERROR or length < _NLMSGHDR.size:
                raise ValueError("netlink refused the dump")
            body = offset + _NLMSGHDR.size
            if _MSG_HEAD.unpack_from(data, body)[1] == TCP_LISTEN:
                port, _ = _PORTS.unpack_from(data, body + 4)
                raw = data[body + 8:body + 8 + size]
                found.add((socket.inet_ntop(family, raw), port))
            offset += (length + 3) & ~3  # messages are 4-byte aligned

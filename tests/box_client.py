"""Client loop run INSIDE the systemd box (tests/systemd_box.py), with the box's python3.

    box_client.py HOST PORT SECONDS STARTED_FILE STOP_FILE

Each round: TCP connect to the balancer, TLS handshake with the stand-in behind it, GET
/version, read the whole reply. Stops when STOP_FILE appears, after SECONDS, or after
MAX_REQUESTS, and prints one JSON report: {"ok": n, "failed": n, "errors": {...}}.
Standard library only: the box's system python has nothing else.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import ssl
import sys
import time

MAX_REQUESTS = 20_000
PACE = 0.01  # at most ~100 requests/s: the CI machine's cores are shared


def one_request(host: str, port: int, context: ssl.SSLContext) -> None:
    with socket.create_connection((host, port), timeout=3.0) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(b"GET /version HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := tls.recv(4096):
            reply += chunk
    if not reply.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        raise OSError(f"unexpected reply {reply[:40]!r}")


def main() -> int:
    host, port, seconds, started, stop = sys.argv[1:6]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # stand-ins use throwaway certificates
    ok, errors = 0, collections.Counter[str]()
    deadline = time.monotonic() + float(seconds)
    while (time.monotonic() < deadline and ok + sum(errors.values()) < MAX_REQUESTS
           and not os.path.exists(stop)):
        try:
            one_request(host, int(port), context)
            ok += 1
            if ok == 1:
                open(started, "w").close()
        except OSError as e:
            errors[f"{type(e).__name__}: {e}"[:120]] += 1
        time.sleep(PACE)
    print(json.dumps({"ok": ok, "failed": sum(errors.values()), "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A client loop for the VIP tests: GET /version through the VIP, one line per try.

Runs inside the client namespace (`ip netns exec … python vipclient.py HOST PORT`).
Each line is `<CLOCK_MONOTONIC seconds> ok|fail`; the test reads the file. Bounded:
it stops after --duration seconds, or on SIGTERM, whichever comes first.
"""

from __future__ import annotations

import argparse
import http.client
import signal
import sys
import time


def once(host: str, port: int, timeout: float) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/version", headers={"Connection": "close"})
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=0.25)
    parser.add_argument("--duration", type=float, default=120.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        started = time.monotonic()
        ok = once(args.host, args.port, args.timeout)
        print(f"{started:.3f} {'ok' if ok else 'fail'}", flush=True)
        time.sleep(max(0.0, args.interval - (time.monotonic() - started)))


if __name__ == "__main__":
    main()

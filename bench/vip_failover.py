"""VIP failover time of a balancer pair, in network namespaces (root, `ip`, keepalived).

    python -m bench.vip_failover [--rounds 20]

Builds the lab of tests/netns.py (two balancers, a client, two stand-in
apiservers), then, round after round, fails the current VIP holder and measures
how long the client loop (a GET every 50 ms, 250 ms timeout) goes without
service. Failures: the holder's link cut at the switch (no goodbye: the backup
must time out, 3 x advert + skew), and every apiserver unreachable from the
holder only (our fit link: FAULT, priority 0, immediate handover). The same
pair with advert_int 1 s is the kubeadm HA guide's keepalived timing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers import wait_until
from netns import NODES, Lab, ip


def cut(lab: Lab, holder: str) -> None:
    ip("-n", lab.ns("sw"), "link", "set", f"p{holder}", "down")


def heal_cut(lab: Lab, holder: str) -> None:
    ip("-n", lab.ns("sw"), "link", "set", f"p{holder}", "up")


def unreach(lab: Lab, holder: str) -> None:
    for node in NODES:
        ip("-n", lab.ns(holder), "route", "add", "prohibit", f"{node}/32")


def heal_unreach(lab: Lab, holder: str) -> None:
    for node in NODES:
        ip("-n", lab.ns(holder), "route", "del", "prohibit", f"{node}/32")


FAILURES = {"link-down": (cut, heal_cut), "apiservers-down": (unreach, heal_unreach)}


def measure(advert: str, failure: str, rounds: int) -> list[float]:
    inject, heal = FAILURES[failure]
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="hkb-"))
    lab = Lab(root)
    times: list[float] = []
    try:
        lab.build()
        lab.start_nodes()
        lab.balancer("b1", 150, advert=advert).start()
        wait_until(lambda: lab.holders() == ["b1"], timeout=10)
        lab.balancer("b2", 100, advert=advert).start()
        client = lab.client(duration=rounds * 15 + 30)
        wait_until(lambda: any(ok for _, ok in client.samples()), timeout=5)
        for _ in range(rounds):
            holder = lab.holders()[0]
            other = "b2" if holder == "b1" else "b1"
            since = time.monotonic()
            inject(lab, holder)
            wait_until(lambda o=other: lab.holders() == [o], timeout=40)  # type: ignore[misc]
            wait_until(lambda s=since: client.outage(s)[1] is not None, timeout=40)  # type: ignore[misc]
            times.append(client.outage(since)[1] or 0.0)
            heal(lab, holder)
            wait_until(lambda h=holder: lab.daemons[h].role_now() == "BACKUP", timeout=30)  # type: ignore[misc]
    finally:
        lab.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    print("| failure | advert interval | rounds | p50 | max |")
    print("| --- | --- | --- | --- | --- |")
    parser.add_argument("--only", choices=["ours-link", "kubeadm-link", "ours-apiservers"])
    args = parser.parse_args()
    runs = {"ours-link": ("link-down", "300ms", "300 ms (ours)"),
            "kubeadm-link": ("link-down", "1s", "1 s (kubeadm guide)"),
            "ours-apiservers": ("apiservers-down", "300ms", "300 ms (ours)")}
    for name, (failure, advert, label) in runs.items():
        if args.only and name != args.only:
            continue
        times = measure(advert, failure, args.rounds)
        print(f"| {failure} | {label} | {len(times)} | {statistics.median(times):.2f} s "
              f"| {max(times):.2f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

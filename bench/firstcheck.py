"""Edit → first client on a healthy new node, with the default `https` check (issue 13).

    python -m bench.firstcheck [--rounds 20] [--before-python PY]

Runs the daemon of this tree ("after") and, with `--before-python`, the daemon installed
in another interpreter ("before": e.g. a venv with main installed) on the same stand-ins
and drop-ins, one after the other. Every setting is the default (check = https, inter 2s,
downinter 5s, rise 2, slowstart 30s, debounce 200 ms), apart from the ports. Each round
atomically writes a drop-in adding node e<i> (a healthy TLS stand-in) and times, from the
rename, until a fresh TLS client through the balancer is answered by it (probes every
~2 ms); then removes the node and waits until it gets no more clients. A second part adds
a node whose /readyz answers 500 and counts the clients it receives in the next 3 s.
Traffic stays on 127.0.0.0/8; every process is ended by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

from haproxy_k8s.demo.certs import make_certs
from haproxy_k8s.demo.standin import StandIn
from testkit.configdir import ConfigDir
from testkit.ports import BALANCER, free_port

from .common import REGISTRY, check_loopback
from .systems import Ours

CLUSTER = "cluster-0"


def with_https_check(system: Ours) -> Ours:
    """The default check (the bench harness's config dir defaults to tcp)."""
    system.config = ConfigDir(system.root, state_dir=system.config.state_dir, check="https")
    system.stats_port = system.config.stats_port
    return system


class OursWith(Ours):
    """The daemon as another interpreter has it installed (the "before" side)."""

    def __init__(self, base: Path, python: str) -> None:
        super().__init__(base)
        self.python = python

    def command(self) -> list[str]:
        return [self.python, "-m", "haproxy_k8s.cli", "run", "--config-dir", str(self.root),
                "--log-level", "info"]


def tls_node(port: int) -> str:
    """GET /version over TLS (no SNI, no verification); the answering node or ""."""
    check_loopback(BALANCER)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((BALANCER, port), timeout=1.0) as raw, \
                context.wrap_socket(raw) as sock:
            sock.sendall(b"GET /version HTTP/1.0\r\n\r\n")
            data = b"".join(iter(lambda: sock.recv(4096), b""))
    except OSError:
        return ""
    body = data.partition(b"\r\n\r\n")[2]
    with contextlib.suppress(ValueError):
        return str(json.loads(body)["node"])
    return ""


def node_toml(node: str, standin: StandIn) -> str:
    return (f"[clusters.{CLUSTER}.nodes.{node}]\naddress = \"{standin.host}\"\n"
            f"port = {standin.port}\n")


def until(predicate: object, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return time.monotonic()
        time.sleep(0.002)
    return None


def wait_gone(port: int, node: str, timeout: float) -> None:
    """Until 50 probes in a row did not reach `node`."""
    deadline, streak = time.monotonic() + timeout, 0
    while streak < 50 and time.monotonic() < deadline:
        streak = 0 if tls_node(port) == node else streak + 1


def measure(system: Ours, port: int, new: StandIn, bad: StandIn, rounds: int
            ) -> dict[str, object]:
    latencies: list[float] = []
    applies: list[float] = []
    misses = 0
    for i in range(rounds):
        t0 = system.write_timed("20-new.toml", node_toml(f"e{i}", new))
        hit = until(lambda: tls_node(port) == "new", 15)
        if hit is None:
            misses += 1
        else:
            latencies.append((hit - t0) * 1000)
        applies.append(float(system.last_apply().get("seconds", 0)) * 1000)
        system.remove("20-new.toml")
        wait_gone(port, "new", 15)
    bad_clients = 0
    for i in range(3):
        system.write("30-bad.toml", node_toml(f"b{i}", bad))
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            bad_clients += tls_node(port) == "bad"
        system.remove("30-bad.toml")
        time.sleep(1.0)  # let the removal apply before the next round
    ordered = sorted(latencies)
    return {"latency_ms": [round(x, 1) for x in latencies], "misses": misses,
            "p50_ms": round(statistics.median(ordered), 1) if ordered else None,
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1) if ordered else None,
            "max_ms": round(max(ordered), 1) if ordered else None,
            "apply_ms_p50": round(statistics.median(applies), 1) if applies else None,
            "clients_on_failing_node_3x3s": bad_clients}


def run(label: str, system: Ours, port: int, standins: dict[str, StandIn],
        rounds: int) -> dict[str, object]:
    base = standins["base"]
    system.write("10-bench.toml", f"[clusters.{CLUSTER}]\nbind = [\"{BALANCER}:{port}\"]\n"
                 + node_toml("base", base))
    system.start()
    try:
        until(lambda: tls_node(port) == "base", 10)
        result = measure(system, port, standins["new"], standins["bad"], rounds)
    finally:
        system.stop()
    print(f"{label}: {json.dumps(result)}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.firstcheck")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--before-python", help="interpreter with the daemon to compare with")
    args = parser.parse_args(argv)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="hk8s-fc-") as tmp:
        root = Path(tmp)
        certs = make_certs(root / "certs", ["127.0.8.10", "127.0.8.11", "127.0.8.12"])
        standins = {name: StandIn(name, host, 0, certs) for name, host in
                    (("base", "127.0.8.10"), ("new", "127.0.8.11"), ("bad", "127.0.8.12"))}
        standins["bad"].readyz_status = 500
        for standin in standins.values():
            standin.start()
        try:
            variants = [("after", with_https_check(Ours(root / "after")))]
            if args.before_python:
                before = OursWith(root / "before", args.before_python)
                variants.insert(0, ("before", with_https_check(before)))
            for label, system in variants:
                results[label] = run(label, system, free_port(BALANCER), standins,
                                     args.rounds)
        finally:
            for standin in standins.values():
                standin.stop()
            REGISTRY.cleanup()
    out = Path(__file__).resolve().parent / "results" / "firstcheck.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

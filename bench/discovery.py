"""Discovery latency: an EndpointSlice change → the new apiserver serving a client.

`python -m bench.discovery [--rounds N] [--poll-rounds M]` (in the test venv) prints JSON.

Two ways of getting the change to HAProxy, both through the real daemon and HAProxy:
- watch: haproxy-k8s's own discovery (list + watch of the stand-in Kubernetes API);
- poll: what EasyHAProxy and k0s-style pollers do, list every 10 s and rewrite the config
  (here: a drop-in the daemon then applies through the runtime API, as fast as it can).
The change is made at a random moment; the time runs until a client request through the
balancer (plain HTTP stand-ins, loopback only) is answered by the new node.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from haproxy_k8s.demo.certs import make_certs
from haproxy_k8s.demo.standin import StandIn
from haproxy_k8s.sources.endpoints import node_name
from haproxy_k8s.sources.kubeclient import KubeClient
from testkit.kubeapi import SELECTOR, SLICES, KubeApi
from testkit.ports import BALANCER, free_port

from .common import REGISTRY, first_hit, gone_since, summary_ms, wait_for
from .systems import Ours

API_HOST = "127.0.8.19"
POLL_PERIOD = 10.0


def _cluster(port: int, seed: StandIn, kubeconfig: Path | None) -> str:
    text = (f'[clusters.c0]\nbind = ["{BALANCER}:{port}"]\n[clusters.c0.nodes.m1]\n'
            f'address = "{seed.host}"\nport = {seed.port}\n')
    if kubeconfig is not None:
        text += f'[clusters.c0.discovery]\nkubeconfig = "{kubeconfig}"\n'
    return text


class Poller:
    """A 10 s poller: list the slices, write every address as a node drop-in."""

    def __init__(self, system: Ours, kubeconfig: Path, port: int) -> None:
        self.client = KubeClient(str(kubeconfig))
        self.system, self.port = system, port
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-poller", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            body: Any = self.client.get_json(SLICES, {"labelSelector": SELECTOR})
            lines = []
            for item in body["items"]:
                for endpoint in item["endpoints"]:
                    for address in endpoint["addresses"]:
                        lines.append(f"[clusters.c0.nodes.{node_name(address)}]\n"
                                     f'address = "{address}"\nport = {self.port}\n')
            self.system.write("50-polled.toml", "".join(lines) or "\n")
            self.stop.wait(POLL_PERIOD)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.client.close()


def _rounds(api: KubeApi, port: int, nodes: list[StandIn], rounds: int,
            period: float) -> list[float]:
    took = []
    for i in range(rounds):
        node = nodes[i % len(nodes)]
        # A random moment within the poll period: pollers are not in step with changes.
        time.sleep(random.uniform(0, period))
        t0 = time.monotonic()
        api.set(node.host)
        hit = first_hit(BALANCER, port, node.name, timeout=period + 15)
        if hit is not None:
            took.append(hit - t0)
        api.remove(node.host)
        gone_since(BALANCER, port, node.name, timeout=period + 30)
    return took


def run(rounds: int, poll_rounds: int) -> dict[str, Any]:
    random.seed(1)
    tmp = Path(tempfile.mkdtemp(dir="/tmp", prefix="hk8s-bd-"))
    certs = make_certs(tmp / "certs", [API_HOST])
    seed = StandIn("m1", "127.0.8.10", 0, None)
    seed.start()
    nodes = [StandIn(f"m{i}", f"127.0.8.{9 + i}", seed.port, None) for i in (2, 3, 4, 5)]
    for node in nodes:
        node.start()
    api = KubeApi(certs, API_HOST, api_port=seed.port).start()
    api.set(seed.host)
    kubeconfig = api.kubeconfig(tmp / "kubeconfig")
    port = free_port(BALANCER)
    system = Ours(tmp / "ours", defaults='check_interval = "500ms"\nfall = 2\nrise = 1\n'
                  'slowstart = "0s"\n')
    try:
        system.write("10-c0.toml", _cluster(port, seed, kubeconfig))
        system.start()
        wait_for(lambda: first_hit(BALANCER, port, "m1", 1.0), 20, 0.1, "seed serving")
        watch = _rounds(api, port, nodes, rounds, period=0.5)
        system.write("10-c0.toml", _cluster(port, seed, None))  # discovery off
        poller = Poller(system, kubeconfig, seed.port)
        poller.thread.start()
        try:
            poll = _rounds(api, port, nodes, poll_rounds, period=POLL_PERIOD)
        finally:
            poller.close()
        return {"watch": summary_ms(watch), "poll_10s": summary_ms(poll),
                "reloads": system.reloads()}
    finally:
        system.stop()
        REGISTRY.cleanup()
        api.stop()
        for node in [seed, *nodes]:
            node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--poll-rounds", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(run(args.rounds, args.poll_rounds), indent=2))


if __name__ == "__main__":
    main()

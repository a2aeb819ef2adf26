"""The discovery source against the stand-in Kubernetes API: list, watch and every failure.

Real TLS, real HTTP, the real lightkube kubeconfig handling; no HAProxy (test_discovery.py
runs the daemon). The health view (which nodes are UP) is a plain function here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, require_tool, wait_until

from haproxy_k8s.config.model import Bind, Cluster, Config, Discovery, Node
from haproxy_k8s.demo.certs import CertBundle
from haproxy_k8s.sources.base import merge_nodes
from haproxy_k8s.sources.kubernetes import KubernetesSource
from haproxy_k8s.sources.slicewatch import MIN_WATCH
from testkit.kubeapi import KubeApi

API_HOST = "127.0.8.19"  # in the session certificate (conftest NODE_HOSTS), unused by nodes here


@pytest.fixture
def api(certs: CertBundle) -> Iterator[KubeApi]:
    server = KubeApi(certs, API_HOST).start()
    try:
        yield server
    finally:
        server.stop()


def _config(kubeconfig: Path, static: tuple[Node, ...] = (Node("seed", "127.0.8.10"),),
            **cluster: object) -> Config:
    c = Cluster("c0", (Bind("127.0.8.1", 6443),), static,
                discovery=Discovery(str(kubeconfig)), **cluster)  # type: ignore[arg-type]
    return Config(clusters=(c,))


class Harness:
    def __init__(self, api: KubeApi, tmp: Path, up: frozenset[str] | None = None) -> None:
        self.kubeconfig = api.kubeconfig(tmp / "kubeconfig")
        self.base = _config(self.kubeconfig)
        self.up = up
        self.posts: list[str] = []
        self.source = KubernetesSource("c0", Discovery(str(self.kubeconfig)), lambda _: self.up)
        self.source.node_sets(self.base)  # the daemon asks once before anything is known

    def nodes(self) -> dict[str, Node]:
        merged = merge_nodes(self.base, self.source.node_sets(self.base))
        return {n.name: n for n in merged.clusters[0].nodes}

    def post(self, detail: str, _complete: bool) -> None:
        self.posts.append(detail)


@pytest.fixture
def harness(api: KubeApi, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(api, tmp_path)
    try:
        yield h
    finally:
        h.source.stop()


def test_list_then_watch_join_leave_and_terminating_drain(api: KubeApi, harness: Harness) -> None:
    api.set("127.0.8.10")
    api.set("127.0.8.11")
    harness.source.start(harness.post)
    wait_until(lambda: "127-0-8-11" in harness.nodes(), message="listed")
    nodes = harness.nodes()
    # The endpoint at the static seed's address *is* the seed: no second server for it.
    assert set(nodes) == {"seed", "127-0-8-11"}
    assert nodes["127-0-8-11"].source == "kubernetes" and nodes["seed"].source == "static"
    posts = len(harness.posts)
    api.set("127.0.8.12")  # a watch event, not a poll
    wait_until(lambda: "127-0-8-12" in harness.nodes(), timeout=2, message="joined by watch")
    assert len(harness.posts) > posts
    api.set("127.0.8.11", ready=False, serving=True, terminating=True)
    wait_until(lambda: harness.nodes()["127-0-8-11"].weight == 0, message="drained")
    api.remove("127.0.8.11")
    wait_until(lambda: "127-0-8-11" not in harness.nodes(), message="removed")
    status = harness.source.status()
    assert status.state == "connected" and status.resource_version == str(api.version)
    assert sum(1 for r in api.requests if "watch=1" in r) == 1  # one watch carried all of it


def test_disabled_in_a_drop_in_stays_out(api: KubeApi, harness: Harness) -> None:
    harness.base = _config(harness.kubeconfig, disabled_addresses=frozenset(
        {("127.0.8.12", 6443)}), disabled_names=frozenset({"127-0-8-13"}))
    for host in ("127.0.8.11", "127.0.8.12", "127.0.8.13"):
        api.set(host)
    harness.source.start(harness.post)
    wait_until(lambda: "127-0-8-11" in harness.nodes())
    assert set(harness.nodes()) == {"seed", "127-0-8-11"}


def test_failures_keep_the_last_known_nodes_and_recover(api: KubeApi, harness: Harness) -> None:
    api.set("127.0.8.11")
    harness.source.start(harness.post)
    wait_until(lambda: "127-0-8-11" in harness.nodes())
    for mode, words in (("401", "401"), ("500", "500"), ("garbage", "not JSON"),
                        ("empty", "no serving endpoint")):
        api.set_mode(mode)
        wait_until(lambda w=words: w in (harness.source.status().last_error or ""),  # type: ignore[misc]
                   timeout=15, message=f"{mode} reported")
        assert "127-0-8-11" in harness.nodes(), f"{mode} emptied the set"
        api.set_mode("ok")
        wait_until(lambda: harness.source.status().state == "connected", timeout=15,
                   message=f"recovered from {mode}")
    assert harness.source.status().errors >= 4


def test_api_gone_then_back(api: KubeApi, harness: Harness) -> None:
    api.set("127.0.8.11")
    harness.source.start(harness.post)
    wait_until(lambda: "127-0-8-11" in harness.nodes())
    port = api.port
    api.stop()
    wait_until(lambda: harness.source.status().errors >= 3, timeout=15,
               message="retried while the API is away")
    assert harness.source.status().state == "error" and "127-0-8-11" in harness.nodes()
    api.port = port
    api.set("127.0.8.12")
    api.start()
    wait_until(lambda: "127-0-8-12" in harness.nodes(), timeout=15, message="back")


def test_410_relists(api: KubeApi, harness: Harness) -> None:
    api.set("127.0.8.11")
    harness.source.start(harness.post)
    wait_until(lambda: "127-0-8-11" in harness.nodes())
    lists = sum(1 for r in api.requests if "watch" not in r)
    # A watch that breaks within MIN_WATCH counts as a failure, not a resumable end.
    settled = time.monotonic() + MIN_WATCH + 0.2
    wait_until(lambda: time.monotonic() > settled)
    api.compact()  # the watch's resourceVersion is gone …
    api.set("127.0.8.12")
    api.remove("127.0.8.11")
    api.drop_watches()  # … and the resumed watch gets 410, so the source lists again
    wait_until(lambda: "127-0-8-12" in harness.nodes() and "127-0-8-11" not in harness.nodes(),
               timeout=10, message="relisted after 410")
    assert sum(1 for r in api.requests if "watch" not in r) > lists
    assert harness.source.status().watch_restarts >= 1


def test_never_removes_the_last_up_node(api: KubeApi, harness: Harness) -> None:
    api.set("127.0.8.11")
    api.set("127.0.8.12")
    harness.source.start(harness.post)
    wait_until(lambda: "127-0-8-12" in harness.nodes())
    harness.up = frozenset({"127-0-8-11"})  # the seed and .12 are down
    api.remove("127.0.8.11")
    wait_until(lambda: harness.source.status().endpoints == 1)
    assert "127-0-8-11" in harness.nodes(), "the last UP node was removed"
    harness.up = frozenset({"127-0-8-11", "127-0-8-12"})
    assert "127-0-8-11" not in harness.nodes()


def test_kubectl_lists_and_watches_the_stand_in(api: KubeApi, tmp_path: Path) -> None:
    """The stand-in speaks the protocol the real client speaks."""
    kubectl = require_tool("kubectl", "apt-get install kubernetes-client")
    api.set("127.0.8.10")
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    proc = subprocess.Popen([kubectl, "--kubeconfig", str(kubeconfig), "get", "endpointslices",
                             "-n", "default", "-l", "kubernetes.io/service-name=kubernetes",
                             "-o", "json", "-w"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: out.extend(proc.stdout or ()), name="kubectl-out")
    reader.start()
    try:
        wait_until(lambda: any("watch=" in r for r in api.requests), timeout=20,
                   message="kubectl watching")
        api.set("127.0.8.11")
        wait_until(lambda: '"127.0.8.11"' in "".join(out), timeout=10,
                   message="kubectl printed the watch event")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        reader.join(timeout=10)
    text = "".join(out)
    assert '"127.0.8.10"' in text, err
    assert text.count('"kind": "EndpointSlice"') >= 2  # the list, then the watch event


def test_reaches_the_api_at_the_nodes_when_its_own_frontend_has_nothing_up(
        api: KubeApi, tmp_path: Path) -> None:
    """The kubeconfig names this balancer (nothing listens there: nothing is UP behind it),
    so the source goes to a known node's address directly, verifying the certificate
    against the kubeconfig's server name (127.0.8.1 is in the certificate, as the
    balancer's name is in a real apiserver's)."""
    frontend = free_port("127.0.8.1")
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig", server=f"https://127.0.8.1:{frontend}")
    cluster = Cluster("c0", (Bind("127.0.8.1", frontend),), (Node("seed", API_HOST, api.port),),
                      discovery=Discovery(str(kubeconfig)))
    base = Config(clusters=(cluster,))
    up: frozenset[str] | None = None  # unknown at first: the server as the kubeconfig says
    source = KubernetesSource("c0", Discovery(str(kubeconfig)), lambda _: up)
    source.node_sets(base)
    api.set("127.0.8.11")
    source.start(lambda _d, _c: None)
    try:
        wait_until(lambda: source.status().errors >= 1, message="the frontend refuses")
        up = frozenset()
        wait_until(lambda: source.status().state == "connected", timeout=15,
                   message="reached through the node")
        assert source.status().via == "nodes"
        assert [n.name for s in source.node_sets(base) for n in s.nodes] == ["127-0-8-11"]
    finally:
        source.stop()


@pytest.mark.parametrize("credential", ["tokenFile", "exec"])
def test_token_file_and_exec_plugin_credentials(api: KubeApi, tmp_path: Path,
                                               credential: str) -> None:
    """Both end as a bearer token the API checks (lightkube reads the kubeconfig)."""
    token_file = tmp_path / "token"
    token_file.write_text(api.token + "\n")
    plugin = tmp_path / "plugin.py"
    plugin.write_text("import json\nprint(json.dumps({'apiVersion': "
                      "'client.authentication.k8s.io/v1beta1', 'kind': 'ExecCredential', "
                      f"'status': {{'token': {api.token!r}}}}}))\n")
    user: dict[str, object] = {"tokenFile": str(token_file)} if credential == "tokenFile" \
        else {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                       "command": sys.executable, "args": [str(plugin)]}}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": api.url,
                                               "certificate-authority": str(api.certs.ca_file)}}],
        "users": [{"name": "t", "user": user}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    api.set("127.0.8.11")
    source = KubernetesSource("c0", Discovery(str(kubeconfig)), lambda _: None)
    source.node_sets(_config(kubeconfig))
    source.start(lambda _d, _c: None)
    try:
        wait_until(lambda: source.status().state == "connected", timeout=10,
                   message=f"connected with {credential}")
    finally:
        source.stop()

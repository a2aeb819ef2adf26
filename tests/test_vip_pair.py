"""Two balancers sharing a VIP through keepalived, in network namespaces made here.

Each test builds its own lab (tests/netns.py): two balancer namespaces, a client
namespace and a namespace with two stand-in apiservers, on a bridge. Root, `ip` and
`keepalived` are required: a failure in CI, a skip elsewhere.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import require_tool, wait_until
from netns import NODES, Lab, ip

from haproxy_k8s.haproxy.master import read_pid

# Service must be back this long after a failure is injected (the bar).
RECOVERY = 3.0


@pytest.fixture
def lab(short_tmp: Path, haproxy_bin: str) -> Iterator[Lab]:
    require_tool("ip", "apt-get install iproute2")
    require_tool("keepalived", "apt-get install keepalived")
    if os.geteuid() != 0:
        message = "network namespaces need root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    lab = Lab(short_tmp)
    try:
        lab.build()
        lab.start_nodes()
        yield lab
    finally:
        lab.close()


def start_pair(lab: Lab) -> None:
    lab.balancer("b1", 150).start()
    wait_until(lambda: lab.holders() == ["b1"], timeout=10, message="b1 takes the VIP")
    lab.balancer("b2", 100).start()
    wait_until(lambda: lab.daemons["b2"].role_now() == "BACKUP", timeout=10,
               message="b2 is BACKUP")


def hold_steady(lab: Lab, holders: list[str], seconds: float) -> None:
    """The holders stay as given for `seconds` (polled, not slept)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert lab.holders() == holders
        wait_until(lambda: True, timeout=0.1)


def test_exactly_one_balancer_holds_the_vip(lab: Lab) -> None:
    start_pair(lab)
    client = lab.client(duration=20)
    wait_until(lambda: any(ok for _, ok in client.samples()), timeout=5)
    # Longer than the takeover time (3 x 0.3 s + skew): a split brain would show.
    hold_steady(lab, ["b1"], 2.5)
    assert lab.daemons["b1"].role_now() == "MASTER"
    assert all(ok for _, ok in client.samples())
    doc1 = lab.daemons["b1"].config.status_file()
    doc2 = lab.daemons["b2"].config.status_file()
    assert doc1["config"]["haproxy_sha256"] == doc2["config"]["haproxy_sha256"]


def kill_haproxy(lab: Lab) -> None:
    pid = read_pid(lab.daemons["b1"].state / "haproxy.pid")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


def kill_daemon(lab: Lab) -> None:
    proc = lab.daemons["b1"].proc
    assert proc is not None
    proc.kill()


def cut_link(lab: Lab) -> None:
    # The switch side of b1's cable: no goodbye can be sent, the backup must time out.
    ip("-n", lab.ns("sw"), "link", "set", "pb1", "down")


def fail_apiservers(lab: Lab) -> None:
    # Unreachable from b1 only: b2 still sees them UP.
    for node in NODES:
        ip("-n", lab.ns("b1"), "route", "add", "prohibit", f"{node}/32")


@pytest.mark.parametrize("failure", [kill_haproxy, kill_daemon, cut_link, fail_apiservers],
                         ids=["haproxy-master-killed", "daemon-sigkilled", "link-down",
                              "apiservers-down"])
def test_failure_on_the_holder_moves_the_vip(lab: Lab, failure: object) -> None:
    start_pair(lab)
    client = lab.client(duration=30)
    wait_until(lambda: any(ok for _, ok in client.samples()), timeout=5)
    since = time.monotonic()
    failure(lab)  # type: ignore[operator]
    wait_until(lambda: lab.holders() == ["b2"], timeout=RECOVERY + 2,
               message="b2 takes the VIP")
    wait_until(lambda: any(t > since + RECOVERY + 1 for t, _ in client.samples()),
               timeout=RECOVERY + 5)
    last_fail, back = client.outage(since)
    print(f"{failure}: last failure {last_fail}, service back after {back}")
    assert back is not None and back <= RECOVERY, client.samples()
    # Nothing lost once the VIP moved.
    assert last_fail is None or last_fail < back


def test_old_holder_does_not_take_the_vip_back(lab: Lab) -> None:
    start_pair(lab)
    b1 = lab.daemons["b1"]
    b1.stop()  # graceful: priority 0, b2 takes over at once
    wait_until(lambda: lab.holders() == ["b2"], timeout=3, message="b2 takes the VIP")
    b1.start()
    wait_until(lambda: b1.role_now() == "BACKUP", timeout=10, message="b1 back as BACKUP")
    hold_steady(lab, ["b2"], 2.5)


def test_bad_vip_is_refused_and_nothing_changes(lab: Lab) -> None:
    start_pair(lab)
    b1 = lab.daemons["b1"]
    before = (b1.state / "keepalived.conf").read_bytes()
    pid = read_pid(b1.state / "keepalived.pid")
    b1.config.write("50-vip.toml", "[vip]\nrouter_id = 300\n")
    error = wait_until(lambda: b1.config.status_file()["daemon"]["last_error"], timeout=5)
    assert error["file"] == "conf.d/50-vip.toml"
    assert "vip.router_id" in error["message"]
    assert (b1.state / "keepalived.conf").read_bytes() == before
    assert read_pid(b1.state / "keepalived.pid") == pid
    hold_steady(lab, ["b1"], 1.0)

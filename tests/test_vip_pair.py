"""Two balancers sharing a VIP through keepalived, in network namespaces made here.

Each test builds its own lab (tests/netns.py): two balancer namespaces, a client
namespace and a namespace with two stand-in apiservers, on a bridge. Root, `ip` and
`keepalived` are required: a failure in CI, a skip elsewhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonutil import child_env
from helpers import require_tool, wait_until
from netns import NODES, Lab, ip

from haproxy_k8s.haproxy.paths import read_pid
from haproxy_k8s.vip.wedge import ENV as WEDGE_ENV
from haproxy_k8s.vip.wedge import SIGNAL as WEDGE_SIGNAL

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


def test_restarted_daemon_adopts_keepalived(lab: Lab) -> None:
    # On the BACKUP: SIGKILL of the holder's daemon moves the VIP by design (the kernel
    # drops its fit link), which test_failure_on_the_holder_moves_the_vip covers.
    start_pair(lab)
    b2 = lab.daemons["b2"]
    pid, processes = read_pid(b2.state / "keepalived.pid"), b2.keepalived_pids()
    assert pid in processes and len(processes) == 2, processes  # parent + VRRP child
    assert b2.proc is not None
    b2.proc.kill()
    b2.proc.wait(timeout=10)
    b2.start()
    wait_until(lambda: b2.role_now() == "BACKUP", timeout=10, message="b2 BACKUP again")
    assert b2.keepalived_pids() == processes  # adopted: the same keepalived, no second one
    vip = b2.config.status_file()["vip"]
    assert (vip["keepalived_pid"], vip["fit"], vip["error"]) == (pid, True, None), vip
    assert "adopted running keepalived" in b2.log_text()
    hold_steady(lab, ["b1"], 1.5)


def test_wedged_loop_moves_the_vip(lab: Lab) -> None:
    # A loop that stops beating while the process lives (deadlock, a call that hangs):
    # vip/wedge.py makes the main thread sleep on SIGURG, other threads run on.
    lab.balancer("b1", 150).start(env={WEDGE_ENV: "8"})
    wait_until(lambda: lab.holders() == ["b1"], timeout=10, message="b1 takes the VIP")
    lab.balancer("b2", 100).start()
    wait_until(lambda: lab.daemons["b2"].role_now() == "BACKUP", timeout=10)
    client = lab.client(duration=30)
    wait_until(lambda: any(ok for _, ok in client.samples()), timeout=5)
    since = time.monotonic()
    proc = lab.daemons["b1"].proc
    assert proc is not None
    os.kill(proc.pid, WEDGE_SIGNAL)
    # The fit link's watchdog: 2 s without a beat (plus up to a tick and a watch period),
    # then FAULT sends priority 0 and b2 takes over at once.
    wait_until(lambda: lab.holders() == ["b2"], timeout=4.0, message="b2 takes the VIP")
    moved = time.monotonic() - since
    print(f"wedged loop: VIP moved after {moved:.2f}s")
    assert moved <= 3.5
    assert "main loop silent" in lab.daemons["b1"].log_text()
    wait_until(lambda: any(t > since + 5 for t, _ in client.samples()), timeout=10)
    _, back = client.outage(since)
    assert back is None or back <= RECOVERY, client.samples()
    # Once the loop runs again b1 is fit again, and joins as BACKUP (preempt = false).
    wait_until(lambda: lab.daemons["b1"].role_now() == "BACKUP", timeout=15)
    hold_steady(lab, ["b2"], 1.0)


def test_frozen_daemon_keeps_the_vip_and_the_service(lab: Lab) -> None:
    # SIGSTOP freezes every thread, the fit link's watchdog too, and the descriptor stays
    # open: the VIP stays. HAProxy is another process and serves on; under systemd,
    # WatchdogSec restarts a daemon frozen for longer (docs/ha-pair.md). Thawed, the
    # watchdog must not mistake the freeze for a wedged loop and flap the VIP.
    start_pair(lab)
    client = lab.client(duration=30)
    wait_until(lambda: any(ok for _, ok in client.samples()), timeout=5)
    since = time.monotonic()
    proc = lab.daemons["b1"].proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        hold_steady(lab, ["b1"], 4.0)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    hold_steady(lab, ["b1"], 3.0)
    assert lab.daemons["b1"].role_now() == "MASTER"
    assert [t for t, ok in client.samples() if t >= since and not ok] == []


def test_restart_daemon_keeps_the_vip(lab: Lab) -> None:
    # The upgrade path (daemon/reexec.py): the fit link's descriptor survives exec().
    start_pair(lab)
    b1 = lab.daemons["b1"]
    assert b1.proc is not None
    client = lab.client(duration=30)
    wait_until(lambda: any(ok for _, ok in client.samples()), timeout=5)
    since = time.monotonic()
    started_at = b1.config.status_file()["daemon"]["started_at"]
    restart = subprocess.Popen([sys.executable, "-m", "haproxy_k8s.cli", "restart-daemon",
                                "--config-dir", str(b1.config.root), "--timeout", "30"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=child_env())
    try:
        # Polled while the daemon re-executes, and for a takeover time after.
        while restart.poll() is None:
            assert lab.holders() == ["b1"]
            wait_until(lambda: True, timeout=0.05)
        out = restart.communicate(timeout=5)[0].decode()
    finally:
        if restart.poll() is None:
            restart.kill()
            restart.wait(timeout=5)
    assert restart.returncode == 0, out
    assert "same master" in out, out
    hold_steady(lab, ["b1"], 2.0)
    doc = b1.config.status_file()
    assert doc["daemon"]["pid"] == b1.proc.pid and doc["daemon"]["started_at"] != started_at
    assert (doc["vip"]["role"], doc["vip"]["fit"]) == ("MASTER", True), doc["vip"]
    assert lab.daemons["b2"].role_now() == "BACKUP"
    assert "kept the fit link" in b1.log_text()
    assert [t for t, ok in client.samples() if t >= since and not ok] == []

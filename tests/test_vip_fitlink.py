"""The fit link: carrier while the loop beats fit; gone when the loop stalls or dies.

Runs a small program inside a network namespace made here (the link is created
there, never on the host). Needs root and `ip`: a failure in CI, a skip elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator

import pytest
from daemonutil import child_env
from helpers import require_tool, wait_until

PROGRAM = textwrap.dedent("""\
    import sys, threading
    from haproxy_k8s.vip import heartbeat
    heartbeat.create_link("hk8s-fit")
    link = heartbeat.FitLink("hk8s-fit", stale_after=0.5)
    link.start()
    link.beat(True, "healthy")
    print("attached", flush=True)
    # The "main loop" now wedges: it never beats again. Stop on stdin EOF.
    sys.stdin.read()
    link.close()
    """)


@pytest.fixture
def netns() -> Iterator[str]:
    require_tool("ip", "apt-get install iproute2")
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("network namespaces need root")
        pytest.skip("network namespaces need root")
    name = f"hk{uuid.uuid4().hex[:6]}fl"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)


def carrier(ns: str) -> bool:
    out = subprocess.run(["ip", "-n", ns, "link", "show", "hk8s-fit"], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    return "NO-CARRIER" not in out


def test_a_stalled_loop_drops_the_carrier(netns: str) -> None:
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", PROGRAM],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env())
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"attached\n"
        assert carrier(netns)
        wait_until(lambda: not carrier(netns), timeout=3, message="carrier dropped")
    finally:
        proc.communicate(timeout=10)


def test_a_killed_holder_drops_the_carrier_at_once(netns: str) -> None:
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c",
                             PROGRAM.replace("stale_after=0.5", "stale_after=60")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env())
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"attached\n"
        assert carrier(netns)
        proc.kill()
        proc.wait(timeout=5)
        # No timeout involved: the kernel drops it when the descriptor closes.
        wait_until(lambda: not carrier(netns), timeout=0.5, message="carrier dropped")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)

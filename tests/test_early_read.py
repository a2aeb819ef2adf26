"""The drop-ins read during the settle time (Daemon._read_early): used only when no file
event came after the read began. The loop's own pieces on a real directory; no HAProxy.
The read is held at a gate so "an event during the read" happens every time."""

from __future__ import annotations

import threading
from pathlib import Path

from daemonutil import ConfigDir
from helpers import free_port

from haproxy_k8s.daemon.loop import Daemon, Event
from haproxy_k8s.sources.files import Loaded


def gated(daemon: Daemon) -> tuple[threading.Event, list[int]]:
    """Make the daemon's file reads wait for the returned gate; count them."""
    gate, reads = threading.Event(), []
    real = daemon.files.read

    def read() -> Loaded:
        gate.wait(10)
        reads.append(1)
        return real()

    daemon.files.read = read  # type: ignore[method-assign]
    return gate, reads


def daemon_on(root: Path) -> Daemon:
    daemon = Daemon(root)
    daemon.debounce.settle = 60.0  # the apply is the test's to call, not the loop's
    return daemon


def test_a_write_is_read_while_the_settle_time_runs(short_tmp: Path) -> None:
    config = ConfigDir(short_tmp)
    config.cluster("c0", free_port(), {"m1": ("127.0.8.10", 6443)})
    daemon = daemon_on(config.root)
    gate, reads = gated(daemon)
    written = config.cluster("c0", free_port(), {"m1": ("127.0.8.10", 6443),
                                                 "m2": ("127.0.8.11", 6443)})
    daemon._handle(Event("written", str(written)))
    gate.set()
    early = daemon._take_early()
    assert early is not None
    c0 = daemon.desired(early).cluster("c0")
    assert c0 is not None and [n.name for n in c0.nodes] == ["m1", "m2"]
    assert reads == [1]
    assert daemon.files.provenance  # the early read is now the last load


def test_an_event_during_the_read_makes_the_apply_read_again(short_tmp: Path) -> None:
    config = ConfigDir(short_tmp)
    config.cluster("c0", free_port(), {"m1": ("127.0.8.10", 6443)})
    daemon = daemon_on(config.root)
    gate, reads = gated(daemon)
    first = config.cluster("c0", free_port(), {"m1": ("127.0.8.10", 6443)})
    daemon._handle(Event("written", str(first)))  # the read starts, held at the gate
    # A second file lands while it is held: the read may or may not see it.
    second = config.cluster("c1", free_port(), {"m1": ("127.0.8.12", 6443)})
    daemon._handle(Event("written", str(second)))  # one read at a time: none started
    held = daemon._early
    gate.set()
    assert daemon._take_early() is None  # begun before the last event: not used
    assert held is not None
    held[1].result()  # it finishes, unused
    config_now = daemon.desired(daemon._take_early())
    assert {c.name for c in config_now.clusters} == {"c0", "c1"}
    assert len(reads) == 2  # the early one, and the apply's own


def test_no_early_read_while_a_write_is_in_progress(short_tmp: Path) -> None:
    config = ConfigDir(short_tmp)
    config.cluster("c0", free_port(), {"m1": ("127.0.8.10", 6443)})
    daemon = daemon_on(config.root)
    gate, reads = gated(daemon)
    gate.set()
    daemon._handle(Event("changed", str(config.root / "conf.d" / "30-new.toml")))
    assert daemon._take_early() is None and reads == []

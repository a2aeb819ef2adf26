"""Shared fixtures: certificates, stand-in apiservers, the haproxy binary and leak checks.

Addresses: the balancer binds 127.0.8.1, stand-in nodes 127.0.8.10 and up. Nothing here
talks to anything outside 127.0.0.0/8.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# testkit/, the harness shared with bench/, sits at the repository root. Appended, not
# prepended: the tests must import the installed haproxy_k8s, not the source tree there.
sys.path.append(str(Path(__file__).resolve().parent.parent))

import psutil
import pytest
from helpers import require_tool, wait_until
from notify import NotifySocket

from haproxy_k8s.demo.certs import CertBundle, make_certs
from haproxy_k8s.demo.standin import StandIn

BALANCER_HOST = "127.0.8.1"
NODE_HOSTS = [f"127.0.8.{i}" for i in range(10, 20)]

# How long a test's children get to exit on their own before they count as leaked.
CHILD_GRACE = 3.0
THREAD_GRACE = 2.0
# Daemon threads are not leak-checked in general (libraries park some for the whole
# session), but these are ours and must end with the object that started them.
CHECKED_DAEMON_THREAD_PREFIXES: tuple[str, ...] = ("standin-", "haproxy-k8s-")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertBundle:
    """One CA and a server certificate valid for the balancer, every node and localhost."""
    directory = tmp_path_factory.mktemp("certs")
    return make_certs(directory, [BALANCER_HOST, *NODE_HOSTS, "localhost"])


class StandInFactory:
    """Makes started stand-ins on 127.0.8.10, .11, … (a free port each unless given)."""

    def __init__(self, certs: CertBundle) -> None:
        self.certs = certs
        self.created: list[StandIn] = []

    def __call__(
        self,
        name: str | None = None,
        port: int = 0,
        *,
        host: str | None = None,
        tls: bool = True,
        require_client_cert: bool = False,
        start: bool = True,
    ) -> StandIn:
        index = len(self.created)
        standin = StandIn(
            name or f"m{index + 1}",
            host or NODE_HOSTS[index % len(NODE_HOSTS)],
            port,  # 0: the stand-in binds a kernel-chosen port, so no free-port race
            self.certs if tls else None,
            require_client_cert=require_client_cert,
        )
        self.created.append(standin)
        if start:
            standin.start()
        return standin

    def stop_all(self) -> None:
        for standin in reversed(self.created):
            standin.stop()


@pytest.fixture
def standin_factory(certs: CertBundle) -> Iterator[StandInFactory]:
    factory = StandInFactory(certs)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def haproxy_bin() -> str:
    """Path of the haproxy binary: a skip locally when missing, a failure in CI."""
    return require_tool("haproxy", "apt-get install haproxy")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the binary carry the `haproxy` marker, so `-m "not haproxy"` works."""
    for item in items:
        if "haproxy_bin" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.haproxy)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short path: unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="hk8s-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves child processes or threads behind.

    Leaked children are killed, so one failing test does not make the next ones fail too.
    A session fixture that starts a process or thread on first use would be blamed on the
    test that first used it: start those in a `pytest_sessionstart` hook instead.
    """
    me = psutil.Process()
    children_before = {child.pid for child in me.children(recursive=True)}
    threads_before = set(threading.enumerate())
    yield
    problems = _leaked_children(me, children_before) + _leaked_threads(threads_before)
    if problems:
        pytest.fail("test left behind: " + "; ".join(problems), pytrace=False)


def _live_children(me: psutil.Process, before: set[int]) -> list[psutil.Process]:
    """Children started during the test that still run (zombies have exited)."""
    alive = []
    for child in me.children(recursive=True):
        if child.pid in before:
            continue
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive


def _leaked_children(me: psutil.Process, before: set[int]) -> list[str]:
    try:
        wait_until(lambda: not _live_children(me, before), timeout=CHILD_GRACE)
        return []
    except AssertionError:
        pass
    leaked = _live_children(me, before)
    descriptions = []
    for child in leaked:
        try:
            descriptions.append(f"process {child.pid} {' '.join(child.cmdline())!r}")
            child.kill()
        except psutil.NoSuchProcess:
            descriptions.append(f"process {child.pid} (exited while being killed)")
    psutil.wait_procs(leaked, timeout=CHILD_GRACE)
    return descriptions


def _leaked_threads(before: set[threading.Thread]) -> list[str]:
    def new_threads() -> list[threading.Thread]:
        return [
            thread
            for thread in threading.enumerate()
            if thread not in before
            and (not thread.daemon or thread.name.startswith(CHECKED_DAEMON_THREAD_PREFIXES))
        ]

    try:
        wait_until(lambda: not new_threads(), timeout=THREAD_GRACE)
        return []
    except AssertionError:
        return [f"thread {thread.name!r}" for thread in new_threads()]


def _system_state_dir() -> tuple[bool, list[tuple[str, float]]]:
    """Whether the default state dir exists, and its entries with their mtimes."""
    from haproxy_k8s.config.model import DEFAULT_STATE_DIR

    root = Path(DEFAULT_STATE_DIR)
    try:
        entries = sorted((p.name, p.lstat().st_mtime) for p in root.iterdir())
    except OSError:
        return root.exists(), []
    return True, entries


@pytest.fixture(scope="session", autouse=True)
def system_state_untouched() -> Iterator[None]:
    """No test may write to the machine's own /run/haproxy-k8s (a live service's)."""
    before = _system_state_dir()
    yield
    after = _system_state_dir()
    assert after == before, f"the test session changed the system state dir: {after}"


@pytest.fixture(scope="session")
def box() -> Iterator[Any]:
    """The systemd box (tests/systemd_box.py), booted once per session and shared by
    test_systemd_box*.py: here, so that every module gets the same one."""
    from systemd_box import Box

    for tool, package in (("mmdebstrap", "mmdebstrap"), ("systemd-nspawn", "systemd-container"),
                          ("nsenter", "util-linux"), ("chroot", "coreutils")):
        require_tool(tool, f"apt-get install {package}")
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the systemd box needs root: required in CI")
        pytest.skip("the systemd box needs root")
    created = Box.create()
    try:
        yield created
    finally:
        created.close()


@pytest.fixture
def notify(short_tmp: Path) -> Iterator[NotifySocket]:
    """A stand-in for systemd's notify socket (pass its path as NOTIFY_SOCKET)."""
    sock = NotifySocket(short_tmp / "notify.sock")
    try:
        yield sock
    finally:
        sock.close()

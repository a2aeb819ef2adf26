"""sd_notify over a real AF_UNIX datagram socket, bound here the way systemd binds its own."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from haproxy_k8s.daemon.systemd import Notifier


@pytest.fixture
def listener(short_tmp: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd's notification socket."""
    path = str(short_tmp / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2.0)
        yield sock, path


@pytest.fixture
def notifier(listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch) -> Notifier:
    monkeypatch.setenv("NOTIFY_SOCKET", listener[1])
    return Notifier()


def received(listener: tuple[socket.socket, str]) -> str:
    return listener[0].recv(4096).decode()


def assert_nothing_received(listener: tuple[socket.socket, str]) -> None:
    listener[0].settimeout(0.05)
    with pytest.raises(TimeoutError):
        listener[0].recv(4096)


def test_ready_carries_status(notifier: Notifier, listener: tuple[socket.socket, str]) -> None:
    notifier.ready("2 clusters, 6/6 nodes UP")
    assert received(listener) == "READY=1\nSTATUS=2 clusters, 6/6 nodes UP"


@pytest.mark.parametrize(
    ("call", "datagram"),
    [
        (lambda n: n.status("applying generation 7"), "STATUS=applying generation 7"),
        (lambda n: n.watchdog(), "WATCHDOG=1"),
        (lambda n: n.stopping(), "STOPPING=1"),
    ],
    ids=["status", "watchdog", "stopping"],
)
def test_datagrams(notifier: Notifier, listener: tuple[socket.socket, str],
                   call: Callable[[Notifier], None], datagram: str) -> None:
    call(notifier)
    assert received(listener) == datagram


def test_reloading_carries_monotonic_usec(
    notifier: Notifier, listener: tuple[socket.socket, str]
) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = received(listener).split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_apply_cycle_in_order(notifier: Notifier, listener: tuple[socket.socket, str]) -> None:
    notifier.reloading()
    notifier.ready("generation 2")
    assert received(listener).startswith("RELOADING=1\n")
    assert received(listener) == "READY=1\nSTATUS=generation 2"


def test_status_cannot_inject_assignments(
    notifier: Notifier, listener: tuple[socket.socket, str]
) -> None:
    # An error message with line breaks must not become READY=1 or MAINPID=.
    notifier.status("conf.d/10.toml: bad\nREADY=1\r\nMAINPID=1")
    assert received(listener) == "STATUS=conf.d/10.toml: bad READY=1  MAINPID=1"


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"haproxy-k8s-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notifier = Notifier()
        assert notifier.enabled
        notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_environ_argument_overrides_process_environment(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    Notifier({"NOTIFY_SOCKET": listener[1]}).stopping()
    assert received(listener) == "STOPPING=1"


@pytest.mark.parametrize("value", [None, "", "vsock:2:1234", "relative/path"])
def test_disabled_without_usable_socket(
    value: str | None, listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("x")
    notifier.reloading()
    notifier.status("x")
    notifier.watchdog()
    notifier.stopping()
    assert_nothing_received(listener)


def test_send_failure_is_swallowed_and_logged_once(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="haproxy_k8s.daemon.systemd")
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_tmp / "nobody-listens"))
    notifier = Notifier()
    assert notifier.enabled
    notifier.ready("x")
    notifier.watchdog()
    failures = [r for r in caplog.records if "sd_notify" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.DEBUG


def test_failure_is_logged_again_after_a_success(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="haproxy_k8s.daemon.systemd")
    path = str(short_tmp / "flaky")
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier()
    notifier.watchdog()  # fails: nothing bound yet
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        notifier.watchdog()  # succeeds
    os.unlink(path)
    notifier.watchdog()  # fails again
    assert len([r for r in caplog.records if "sd_notify" in r.getMessage()]) == 2


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<ours>"}, 15.0),
        ({"WATCHDOG_USEC": "500000"}, 0.25),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "30s"}, None),
        ({}, None),
    ],
    ids=["set", "our-pid", "sub-second", "other-pid", "bad-pid", "zero", "negative",
         "not-a-number", "unset"],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    env = {k: str(os.getpid()) if v == "<ours>" else v for k, v in env.items()}
    assert Notifier(env).watchdog_interval() == interval


def test_watchdog_interval_read_from_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier().watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier().watchdog_interval() is None

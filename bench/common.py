"""Shared pieces: process bookkeeping, loopback clients, a bounded load, statistics.

Every process the benchmark starts is registered here by pid, and `REGISTRY.cleanup()`
(called from a `finally` in run.py, also on Ctrl-C and SIGTERM) ends them and their
children. Nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil

import haproxy_k8s

REPO = Path(haproxy_k8s.__file__).resolve().parent.parent
BALANCER = "127.0.8.1"

T = TypeVar("T")


# -- processes ---------------------------------------------------------------------------
def child_env() -> dict[str, str]:
    """Children import the same haproxy_k8s and bench as this process (the work tree)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NOTIFY_SOCKET", None)
    return env


class Registry:
    """Pids of everything we started; cleanup() ends them (children first, by pid)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._popens: list[subprocess.Popen[bytes]] = []
        self._pids: set[int] = set()

    def spawn(self, args: list[str], log: Path | None = None) -> subprocess.Popen[bytes]:
        out = log.open("ab") if log is not None else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=child_env(), cwd=str(REPO))
        finally:
            if log is not None:
                out.close()  # type: ignore[union-attr]
        with self._lock:
            self._popens.append(proc)
        return proc

    def adopt(self, pid: int | None) -> None:
        """Remember a process started on our behalf (an HAProxy master) by pid."""
        if pid:
            with self._lock:
                self._pids.add(pid)

    def cleanup(self) -> None:
        with self._lock:
            popens, self._popens = self._popens, []
            pids, self._pids = self._pids, set()
        for proc in popens:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.terminate()
        for proc in popens:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        for pid in pids:
            kill_tree(pid)


REGISTRY = Registry()


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal `pid` and its descendants (found by pid, never by name) and reap them."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)
    psutil.wait_procs(procs, timeout=5)


def stop_popen(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.wait(timeout=5)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / (1 << 20)


# -- waiting -------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.01,
             what: str = "condition") -> T:
    """Poll until `predicate` returns something truthy; exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as e:  # a server still starting refuses connects
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not true within {timeout:g}s (last: {last!r})")
        time.sleep(interval)


# -- loopback network --------------------------------------------------------------------
def free_port(host: str = BALANCER) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def check_loopback(host: str) -> None:
    if not host.startswith("127."):
        raise ValueError(f"benchmark traffic stays on 127.0.0.0/8, not {host}")


def tcp_accepts(host: str, port: int, timeout: float = 1.0) -> bool:
    check_loopback(host)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_NODE = re.compile(rb'"node":\s*"([^"]*)"')
_REQUEST = b"GET /version HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


class ProbeError(Exception):
    pass


def probe(host: str, port: int, timeout: float = 2.0) -> str:
    """GET /version on a fresh connection; return the stand-in's node name.

    Raises ProbeError (refused, reset, timeout, empty or non-200 answer).
    """
    check_loopback(host)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_REQUEST)
            chunks = []
            while True:
                data = sock.recv(4096)
                if not data:
                    break
                chunks.append(data)
    except OSError as e:
        raise ProbeError(type(e).__name__) from e
    body = b"".join(chunks)
    if not body:
        raise ProbeError("empty reply")
    if not body.startswith(b"HTTP/1.1 200"):
        raise ProbeError(body.split(b"\r\n", 1)[0].decode(errors="replace"))
    match = _NODE.search(body)
    if not match:
        raise ProbeError("no node in reply")
    return match.group(1).decode()


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    failure_times: list[float] = field(default_factory=list)
    by_node: Counter[str] = field(default_factory=Counter)
    # (start, seconds) of every successful request
    latencies: list[tuple[float, float]] = field(default_factory=list)

    def failed_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.failure_times if start <= t <= end)

    def slowest_between(self, start: float, end: float) -> float:
        return max((d for t, d in self.latencies if start <= t <= end), default=0.0)


class Load:
    """`threads` clients, each: new connection, GET /version, close, pause; repeat.

    Bounded twice: stop() ends it, and so does `max_seconds` on its own.
    """

    def __init__(self, host: str, port: int, *, threads: int = 8, pause: float = 0.005,
                 max_seconds: float = 300.0) -> None:
        check_loopback(host)
        self.host, self.port, self.pause = host, port, pause
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._run, name=f"bench-load-{i}", daemon=True)
                         for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            started = time.monotonic()
            try:
                node = probe(self.host, self.port, timeout=5.0)
                error = None
            except ProbeError as e:
                node, error = "", str(e)
            took = time.monotonic() - started
            with self._lock:
                if error is None:
                    self.result.ok += 1
                    self.result.by_node[node] += 1
                    self.result.latencies.append((started, took))
                else:
                    self.result.failed += 1
                    self.result.errors[error] += 1
                    self.result.failure_times.append(time.monotonic())
            self._stop.wait(self.pause)

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        return self.result


def first_hit(host: str, port: int, node: str, timeout: float,
              interval: float = 0.002) -> float | None:
    """Probe until a reply comes from `node`; return that moment (monotonic) or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ProbeError):
            if probe(host, port, timeout=1.0) == node:
                return time.monotonic()
        time.sleep(interval)
    return None


def gone_since(host: str, port: int, node: str, timeout: float, quiet: float = 0.5,
               min_probes: int = 20, interval: float = 0.002) -> float | None:
    """When `node` stopped getting new connections: the moment of the first probe of a run
    of probes that reached other nodes only, once that run lasted `quiet` seconds and
    `min_probes` probes. None if that did not happen within `timeout`."""
    deadline = time.monotonic() + timeout
    run_start: float | None = None
    run_len = 0
    while time.monotonic() < deadline:
        now = time.monotonic()
        try:
            got = probe(host, port, timeout=1.0)
        except ProbeError:
            got = None
        if got == node:
            run_start, run_len = None, 0
        elif got is not None:
            if run_start is None:
                run_start = now
            run_len += 1
            if now - run_start >= quiet and run_len >= min_probes:
                return run_start
        time.sleep(interval)
    return None


# -- statistics ----------------------------------------------------------------------------
def percentile(values: Iterable[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None if empty."""
    data = sorted(values)
    if not data:
        return None
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def median(values: Iterable[float]) -> float | None:
    return percentile(values, 50)


def summary_ms(seconds: Iterable[float]) -> dict[str, float | int | None]:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50": percentile(ms, 50), "p95": percentile(ms, 95),
            "max": max(ms) if ms else None, "min": min(ms) if ms else None}

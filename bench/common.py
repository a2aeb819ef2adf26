"""Shared pieces: process bookkeeping, loopback clients, statistics (the rest is testkit's).

Every process the benchmark starts is registered here by pid, and `REGISTRY.cleanup()`
(called from a `finally` in run.py, also on Ctrl-C and SIGTERM) ends them and their
children. Nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import psutil

import haproxy_k8s
from testkit.load import Load, RequestFailed
from testkit.procs import child_env, kill_tree

REPO = Path(haproxy_k8s.__file__).resolve().parent.parent

T = TypeVar("T")


# -- processes ---------------------------------------------------------------------------
class Registry:
    """Pids of everything we started; cleanup() ends them (children first, by pid)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._popens: list[subprocess.Popen[bytes]] = []
        self._pids: set[int] = set()

    def spawn(self, args: list[str], log: Path | None = None,
              source: Path | None = None) -> subprocess.Popen[bytes]:
        """Start `args`; `source`: import haproxy_k8s from that checkout instead of ours."""
        out = log.open("ab") if log is not None else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=source_env(source),
                                    cwd=str(source or REPO))
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


def source_env(source: Path | None) -> dict[str, str]:
    """child_env(), importing haproxy_k8s from the checkout `source` when given."""
    env = child_env()
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / (1 << 20)


# -- waiting -------------------------------------------------------------------------------
class Gone(RuntimeError):
    """What a wait was for can no longer happen (the process exited): stop waiting."""


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.01,
             what: str = "condition") -> T:
    """Poll until `predicate` returns something truthy; exceptions count as "not yet",
    except Gone."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Gone:
            raise
        except Exception as e:  # a server still starting refuses connects
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not true within {timeout:g}s (last: {last!r})")
        time.sleep(interval)


# -- loopback network --------------------------------------------------------------------
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


class ProbeError(RequestFailed):
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


def probe_load(host: str, port: int, *, threads: int = 8, pause: float = 0.005,
               max_seconds: float = 300.0) -> Load:
    """`threads` clients, each: new connection, GET /version, close, pause; repeat."""
    check_loopback(host)
    return Load(lambda: probe(host, port, timeout=5.0), threads=threads, pause=pause,
                max_seconds=max_seconds, name="bench-load")


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

"""Run the real daemon (`haproxy-k8s run`) as a child process for integration tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil
from helpers import free_port, wait_until

import haproxy_k8s
from haproxy_k8s.haproxy.master import read_pid

BALANCER = "127.0.8.1"
PACKAGE_ROOT = str(Path(haproxy_k8s.__file__).resolve().parent.parent)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for our CLI in a child: the same package the tests import."""
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NOTIFY_SOCKET", None)
    env.update(extra)
    return env


def cli(*args: str, timeout: float = 60.0, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "haproxy_k8s.cli", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=child_env(**env), check=False)


class ConfigDir:
    """A config dir with a main file pointing everything at loopback test ports."""

    def __init__(self, root: Path, *, check: str = "tcp", debounce: str = "100ms",
                 extra_main: str = "") -> None:
        self.root = root
        self.conf_d = root / "conf.d"
        self.conf_d.mkdir(parents=True, exist_ok=True)
        self.state_dir = root / "state"
        self.stats_port = free_port(BALANCER)
        self.metrics_port = free_port(BALANCER)
        (root / "haproxy-k8s.toml").write_text(textwrap.dedent(f"""\
            [haproxy]
            state_dir = "{self.state_dir}"
            [defaults]
            check = "{check}"
            check_interval = "500ms"
            fast_interval = "200ms"
            down_interval = "500ms"
            fall = 2
            rise = 1
            slowstart = "0s"
            [stats]
            bind = "{BALANCER}:{self.stats_port}"
            [metrics]
            bind = "{BALANCER}:{self.metrics_port}"
            [watch]
            debounce = "{debounce}"
            """) + extra_main)

    def write(self, name: str, text: str) -> Path:
        """Write a drop-in atomically (as a careful operator or config tool would)."""
        path = self.conf_d / name
        tmp = self.conf_d / f".{name}.tmp"
        tmp.write_text(textwrap.dedent(text))
        os.replace(tmp, path)
        return path

    def cluster(self, name: str, port: int, nodes: dict[str, tuple[str, int]],
                file: str | None = None) -> Path:
        lines = [f'[clusters.{name}]', f'bind = ["{BALANCER}:{port}"]']
        for node, (address, node_port) in nodes.items():
            lines += [f"[clusters.{name}.nodes.{node}]", f'address = "{address}"',
                      f"port = {node_port}"]
        return self.write(file or f"10-{name}.toml", "\n".join(lines) + "\n")

    def status_file(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return data


class DaemonProcess:
    """`haproxy-k8s run` in a child process; stop() ends it and any HAProxy it left."""

    def __init__(self, config: ConfigDir, **env: str) -> None:
        self.config = config
        self.env = env
        self.log = config.root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> DaemonProcess:
        self.start_unwaited()
        wait_until(self._started, timeout, message=f"daemon start ({self.log_text()[-2000:]})")
        return self

    def start_unwaited(self) -> DaemonProcess:
        """Start the process and return at once (the caller waits its own way)."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "haproxy_k8s.cli", "run", "--config-dir",
                 str(self.config.root), "--log-level", "debug"],
                stdout=log, stderr=subprocess.STDOUT, env=child_env(**self.env))
        return self

    def _started(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log_text()}")
        status = self.config.status_file()
        return bool(status.get("daemon", {}).get("pid") == self.proc.pid
                    and status.get("haproxy", {}).get("pid"))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def haproxy_pid(self) -> int | None:
        return read_pid(self.config.state_dir / "haproxy.pid")

    def status(self) -> dict[str, Any]:
        return self.config.status_file()

    def generation(self) -> int:
        return int(self.status().get("daemon", {}).get("generation", 0))

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM the daemon (it stops HAProxy), then make sure nothing is left."""
        # pytest shows captured output only for a failing test: the daemon's log then.
        print(f"--- daemon log tail ({self.log}) ---\n{self.log_text()[-6000:]}")
        haproxy = self.haproxy_pid
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if haproxy is not None:
            kill_tree(haproxy)


def kill_tree(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=5)

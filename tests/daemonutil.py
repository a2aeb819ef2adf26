"""Run the real daemon (`haproxy-k8s run`) as a child process for integration tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import wait_until

import testkit.configdir
from haproxy_k8s.haproxy.paths import read_pid
from testkit.ports import BALANCER as BALANCER
from testkit.procs import child_env as child_env
from testkit.procs import kill_tree as kill_tree
from testkit.procs import stop_popen

# Quick checks, so a node's failure shows within a second or two (test_health relies on it).
FAST_CHECKS = """\
    check_interval = "500ms"
    fast_interval = "200ms"
    down_interval = "500ms"
    fall = 2
    rise = 1
    slowstart = "0s"
    """


# `python -m` puts the working directory first on sys.path: run children elsewhere, so
# they import the installed package (as the tests do), never the checkout beside them.
NEUTRAL_CWD = "/"


def cli(*args: str, timeout: float = 60.0, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "haproxy_k8s.cli", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=child_env(**env), check=False, cwd=NEUTRAL_CWD)


class ConfigDir(testkit.configdir.ConfigDir):
    """A config dir with a main file pointing everything at loopback test ports."""

    def __init__(self, root: Path, *, check: str = "tcp", debounce: str = "100ms",
                 extra_main: str = "", state_dir: Path | None = None) -> None:
        watch = f'[watch]\ndebounce = "{debounce}"\n'
        super().__init__(root, check=check, defaults=FAST_CHECKS, extra_main=watch + extra_main,
                         state_dir=state_dir)


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
                stdout=log, stderr=subprocess.STDOUT, env=child_env(**self.env),
                cwd=NEUTRAL_CWD)
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
        if self.proc is not None:
            stop_popen(self.proc)
        if haproxy is not None:
            kill_tree(haproxy)

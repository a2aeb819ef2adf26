"""The two systems under test, behind one interface.

`Ours` runs the real daemon (`python -m haproxy_k8s.cli run`, as tests/daemonutil.py does);
`Baseline` runs bench/baseline.py. Both get a config dir of their own (same main file apart
from the state dir and ports, same drop-ins) in a short /tmp directory.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from haproxy_k8s.cli.status import collect
from haproxy_k8s.errors import RuntimeApiError
from haproxy_k8s.haproxy.paths import StatePaths, read_pid
from haproxy_k8s.haproxy.replies import ProcTable, parse_show_proc, parse_show_stat
from haproxy_k8s.haproxy.sockets import AdminSocket, MasterSocket
from testkit.configdir import ConfigDir
from testkit.procs import child_env, kill_tree, stop_popen

from .common import REGISTRY, Gone, python_module, source_env, wait_for


class System:
    name = "?"
    module = "?"
    source: Path | None = None  # a checkout to run instead of this one (Previous)

    def __init__(self, base: Path, defaults: str = "", main_extra: str = "") -> None:
        # As deployed: the config dir (/etc/haproxy-k8s) and the state dir
        # (/run/haproxy-k8s) apart, so state and log writes cause no inotify events
        # in the watched directory.
        self.config = ConfigDir(base / "etc", state_dir=base / "run", defaults=defaults,
                                extra_main=main_extra)
        self.root, self.conf_d = self.config.root, self.config.conf_d
        self.paths = StatePaths(self.config.state_dir)
        self.log = base / "log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.stats_port = self.config.stats_port

    # -- config edits (atomic, as a careful operator or a config tool writes) -------------
    def write(self, name: str, text: str) -> None:
        self.config.write(name, text)

    def write_timed(self, name: str, text: str) -> float:
        """Write a drop-in; return the moment (monotonic) it appeared under its name."""
        return self.config.write_timed(name, text)

    def remove(self, name: str) -> float:
        return self.config.remove(name)

    # -- lifecycle -------------------------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> float:
        """Start; return seconds until HAProxy serves (`ready()`)."""
        started = time.monotonic()
        self.proc = REGISTRY.spawn(self.command(), self.log, self.source)
        wait_for(self._started, timeout, 0.01, f"{self.name} start")
        REGISTRY.adopt(self.haproxy_pid)
        return time.monotonic() - started

    def _started(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise Gone(f"{self.name} exited {self.proc.returncode}: {self.log_tail()}")
        return self.ready()

    def ready(self) -> bool:
        table = self.proc_table()
        return table is not None and bool(table.workers)

    def stop(self) -> None:
        haproxy = self.haproxy_pid
        if self.proc is not None:
            stop_popen(self.proc)
        if haproxy is not None:
            kill_tree(haproxy)

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def haproxy_pid(self) -> int | None:
        return read_pid(self.paths.haproxy_pid)

    # -- HAProxy, as seen from outside ---------------------------------------------------
    def proc_table(self) -> ProcTable | None:
        try:
            text = MasterSocket(self.paths.master_socket, 2.0).command("show proc")
            return parse_show_proc(text)
        except (RuntimeApiError, ValueError):
            return None

    def reloads(self) -> int:
        table = wait_for(self.proc_table, 10, 0.01, f"{self.name} show proc")
        return table.master.reloads

    def worker_pids(self) -> list[int]:
        table = self.proc_table()
        return sorted(table.worker_pids) if table else []

    def stat_rows(self) -> list[dict[str, str]]:
        return parse_show_stat(AdminSocket(self.paths.admin_socket, 2.0).command("show stat"))

    def server_status(self, backend: str, server: str) -> str | None:
        """HAProxy's own view (`show stat`) of one server's status."""
        try:
            rows = self.stat_rows()
        except (RuntimeApiError, ValueError):
            return None
        for row in rows:
            if row.get("pxname") == backend and row.get("svname") == server:
                return row.get("status")
        return None

    # -- "has it applied my edit?" -------------------------------------------------------
    def token(self) -> Any:
        raise NotImplementedError

    def applied_since(self, token: Any) -> bool:
        raise NotImplementedError

    def wait_applied(self, token: Any, timeout: float = 30.0) -> float:
        wait_for(lambda: self.applied_since(token), timeout, 0.005, f"{self.name} apply")
        return time.monotonic()

    def node_state(self, cluster: str, node: str) -> str | None:
        """The node's state as this system's operator would read it."""
        raise NotImplementedError

    def cleanup_dirs(self) -> None:
        pass


_APPLIES = re.compile(rb'"applies":\s*(\d+)')
# {"daemon":{"pid":N, …},"haproxy":{"pid":M|null, …: the document's first two keys.
_PIDS = re.compile(rb'^\{"daemon":\s*\{"pid":\s*(\d+).*?\},\s*"haproxy":\s*\{"pid":\s*(\d+|null)',
                   re.DOTALL)


class Ours(System):
    """The real daemon, started like tests/daemonutil.DaemonProcess does."""

    name = "ours"

    def command(self) -> list[str]:
        return python_module("haproxy_k8s.cli", "run", "--config-dir", str(self.root),
                             "--log-level", "info")

    def status_file(self) -> dict[str, Any]:
        return self.config.status_file()

    def ready(self) -> bool:
        """status.json names this daemon and a running HAProxy. From the head of the
        file, as applies() reads it: a parse of the whole megabyte at 1,000 clusters
        was charged to the start it measures."""
        head = self._status_head()
        if head is None:
            return False
        found = _PIDS.search(head)
        if found is None:  # an unexpected layout: read it all
            status = self.status_file()
            return bool(status.get("daemon", {}).get("pid") == self.pid
                        and status.get("haproxy", {}).get("pid"))
        return int(found.group(1)) == self.pid and found.group(2) != b"null"

    def token(self) -> int:
        return self.applies()

    def applies(self) -> int:
        """daemon.applies from the head of status.json. The bench polls it every 5 ms
        while a change applies, and parsing the whole document (1 MB at 1,000
        clusters) on the same two cores slowed the daemon it measures. "daemon" is
        the document's first key, so its first "applies" is the daemon's."""
        head = self._status_head()
        if head is None:
            return 0
        found = _APPLIES.search(head)
        if found is None:  # not written yet, or an unexpected layout: read it all
            return int(self.status_file().get("daemon", {}).get("applies", 0))
        return int(found.group(1))

    def _status_head(self) -> bytes | None:
        """The first 64 KiB of status.json (the daemon's part); None before it exists."""
        try:
            with open(self.paths.status, "rb") as f:
                return f.read(1 << 16)
        except OSError:
            return None

    def applied_since(self, token: Any) -> bool:
        return self.applies() > int(token)

    def last_apply(self) -> dict[str, Any]:
        data: dict[str, Any] = self.status_file().get("daemon", {}).get("last_apply", {})
        return data

    def node_state(self, cluster: str, node: str) -> str | None:
        """What `haproxy-k8s status --json` says (the same function, run in-process)."""
        doc, _ = collect(self.paths, self.root)
        for c in doc.get("clusters", []):
            if c.get("name") == cluster:
                for n in c.get("nodes", []):
                    if n.get("name") == node:
                        return str(n.get("state"))
        return None

    def file_state(self, cluster: str, node: str) -> str | None:
        """What the daemon's own status.json says (refreshed every main-loop tick)."""
        for c in self.status_file().get("clusters", []):
            if c.get("name") == cluster:
                for n in c.get("nodes", []):
                    if n.get("name") == node:
                        return str(n.get("state"))
        return None

    def status_cli_seconds(self, *args: str, as_json: bool = True) -> float:
        """Wall time of `haproxy-k8s status [--json] [args]`, interpreter start included."""
        started = time.monotonic()
        proc = subprocess.run(
            python_module("haproxy_k8s.cli", "status", *(["--json"] if as_json else []),
                          *args, "--config-dir", str(self.root)),
            capture_output=True, timeout=120, check=False, env=source_env(self.source),
            cwd=str(self.source) if self.source else None)
        ok = proc.stdout.startswith(b"{") if as_json else b"CLUSTER" in proc.stdout
        if proc.returncode == 3 or not ok:
            raise RuntimeError(f"status failed ({proc.returncode}): {proc.stderr!r}")
        return time.monotonic() - started

    def verb_async(self, *args: str) -> None:
        """Start an operator verb (drain/ready/maint) in the background; see verb_wait()."""
        self._verb = subprocess.Popen(
            python_module("haproxy_k8s.cli", *args, "--config-dir", str(self.root)),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=child_env())
        self._verb_args = args

    def verb_wait(self) -> None:
        out, _ = self._verb.communicate(timeout=60)
        if self._verb.returncode != 0:
            raise RuntimeError(f"{' '.join(self._verb_args)} failed: {out!r}")


class Previous(Ours):
    """The daemon of another checkout (`python -m bench --previous REF`), run the same way."""

    name = "previous"

    def __init__(self, base: Path, defaults: str = "", main_extra: str = "") -> None:
        super().__init__(base, defaults, main_extra)
        self.source = PREVIOUS.path


class _PreviousCheckout:
    path: Path | None = None  # set by run.py from --previous


PREVIOUS = _PreviousCheckout()


class Baseline(System):
    name = "baseline"

    def command(self) -> list[str]:
        return python_module("bench.baseline", "--config-dir", str(self.root))

    def _applied(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            return int((self.paths.root / "applied").read_text())
        return 0

    def token(self) -> tuple[int, int, frozenset[int]]:
        table = wait_for(self.proc_table, 10, 0.005, "baseline show proc")
        return self._applied(), table.master.reloads, table.worker_pids

    def applied_since(self, token: Any) -> bool:
        """SIGUSR2 sent, the master re-executed and a new worker is listed."""
        applied, reloads, workers = token
        if self._applied() <= applied:
            return False
        table = self.proc_table()
        return bool(table and table.master.reloads > reloads
                    and table.worker_pids - workers)

    def node_state(self, cluster: str, node: str) -> str | None:
        status = self.server_status(f"be_{cluster}", node)
        if status is None:
            return None
        return status.split()[0]

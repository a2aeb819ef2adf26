"""`haproxy-k8s demo`: the origin topology on loopback, in one command.

Three stand-in kube-apiservers (TLS, `/readyz`, `/version`) on 127.0.8.10-12, HAProxy in
front of them on 127.0.8.1:6443, the real daemon in the foreground of this process, and a
fourth stand-in on 127.0.8.13 that is not configured yet, so the operator can add it by
dropping a file into conf.d. Everything lives in one directory (a fresh one under /tmp
unless `--dir`): config, certificates, HAProxy's state and the node control files.

Only unprivileged ports on 127.0.0.0/8 are used, so it runs as any user. Ctrl-C (or
`--duration`) stops the daemon, which stops HAProxy; then the stand-ins stop and the
temporary directory is removed.
"""

from __future__ import annotations

import importlib
import logging
import os
import shlex
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

from ..daemon.logsetup import setup_logging
from ..daemon.loop import Daemon
from ..errors import HaproxyK8sError
from .layout import (
    BALANCER_HOST,
    CLUSTER,
    NODES,
    PORTS_ENV,
    SAFE_PATH,
    SPARE,
    DemoError,
    DemoPorts,
    Layout,
    add_node_dropin,
    demo_dir,
    write_config,
)
from .standin import MODES, Mode, StandIn

log = logging.getLogger(__name__)

# Where a non-root PATH on Debian does not look, but the haproxy package installs.
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
# How often the node control files are read.
CONTROL_POLL = 0.25
# Control file word -> what the stand-in does. "unready" is an apiserver shutting down
# gracefully: /readyz fails while everything else still answers.
CONTROL_WORDS = ("serve", "unready", *(m for m in MODES if m != "serve"))
# cryptography (for the stand-ins' certificates) is not a dependency of the daemon.
DEMO_EXTRA_MISSING = "the demo needs the demo extra: pip install 'haproxy-k8s[demo]'"


# -- entry point ------------------------------------------------------------------------


def run_demo(duration: float | None, directory: Path | None,
             ports: DemoPorts | None = None) -> int:
    """Run the demo until Ctrl-C, SIGTERM or `duration` seconds; return the exit code."""
    setup_logging("info")
    logging.getLogger("watchdog").setLevel(logging.INFO)
    # Until the daemon installs its own handlers, SIGTERM unwinds like Ctrl-C does, so the
    # cleanup below runs for both.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        _require_demo_extra()
        ports = ports or _ports_from_env()
        binary = _find_haproxy()
        _check_ports_free(ports)
        with demo_dir(directory) as layout:
            return _run(layout, ports, binary, duration, keep=directory is not None)
    except DemoError as e:
        print(f"haproxy-k8s demo: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("haproxy-k8s demo: interrupted", file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(layout: Layout, ports: DemoPorts, binary: str, duration: float | None,
         keep: bool) -> int:
    standins = _start_standins(layout, ports)
    control = _NodeControl(layout.control_dir, standins)
    timer: threading.Timer | None = None
    try:
        configured = standins[:len(NODES)]
        write_config(layout, ports, binary, configured)
        control.start()
        banner = _banner(layout, ports, standins, keep)
        daemon = _DemoDaemon(layout.config_dir, on_started=lambda: print(banner, flush=True))
        if duration is not None:
            timer = threading.Timer(duration, daemon.post, ("stop", "demo duration"))
            timer.name = "demo-duration"
            timer.start()
        try:
            daemon.run()
        except HaproxyK8sError as e:
            print(f"haproxy-k8s demo: {e}", file=sys.stderr)
            return 1
        return 0
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()
        control.stop()
        for standin in reversed(standins):
            standin.stop()


# -- preparation ------------------------------------------------------------------------


def _require_demo_extra() -> None:
    try:
        importlib.import_module(".certs", __package__)
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("cryptography"):
            raise
        raise DemoError(f"{DEMO_EXTRA_MISSING} ({e})") from e


def _ports_from_env() -> DemoPorts:
    text = os.environ.get(PORTS_ENV, "").strip()
    return DemoPorts.parse(text) if text else DemoPorts()


def _find_haproxy() -> str:
    """An absolute path, so the demo works where /usr/sbin is not on PATH (non-root)."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path=SBIN_PATH)
    if found is None:
        raise DemoError("the haproxy binary is not installed: "
                        "`sudo apt-get install haproxy` (or run scripts/demo, which does)")
    path = os.path.abspath(found)
    if not SAFE_PATH.fullmatch(path):
        raise DemoError(f"{path}: haproxy's path holds characters haproxy.cfg cannot take")
    return path


def _check_ports_free(ports: DemoPorts) -> None:
    wanted = [(BALANCER_HOST, ports.balancer, "the balancer"),
              (BALANCER_HOST, ports.stats, "the stats page"),
              (BALANCER_HOST, ports.metrics, "the daemon's metrics")]
    if ports.node:
        wanted += [(host, ports.node, name) for name, host in (*NODES, SPARE)]
    for host, port, what in wanted:
        problem = _bind_problem(host, port)
        if problem:
            raise DemoError(
                f"cannot use {host}:{port} for {what}: {problem}. Is another demo or HAProxy "
                f"running? `ss -ltnp 'sport = :{port}'` shows who listens there.")


def _bind_problem(host: str, port: int) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # HAProxy and the stand-ins set SO_REUSEADDR too: TIME_WAIT leftovers are no conflict.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            return e.strerror or str(e)
    return None


def _start_standins(layout: Layout, ports: DemoPorts) -> list[StandIn]:
    """Start all four stand-ins (certificates valid for their address and the balancer's)."""
    from .certs import make_certs  # the demo extra: see _require_demo_extra

    standins: list[StandIn] = []
    try:
        for name, host in (*NODES, SPARE):
            certs = make_certs(layout.cert_dir, [host, BALANCER_HOST, "localhost"], name)
            standin = StandIn(name, host, ports.node, certs)
            standin.start()
            standins.append(standin)
    except OSError as e:
        for standin in standins:
            standin.stop()
        raise DemoError(str(e)) from e
    except BaseException:
        for standin in standins:
            standin.stop()
        raise
    return standins


# -- what to try ------------------------------------------------------------------------


def _cli_command() -> str:
    """How the operator's shell can run this same haproxy-k8s."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "haproxy-k8s" and argv0.exists():
        script = argv0.resolve()
        # A venv's bin/ is on PATH only in the shell that activated it
        # (scripts/demo does): the operator's other terminal has no such entry.
        on_path = shutil.which("haproxy-k8s", path=_path_outside_venv())
        if on_path is not None and Path(on_path).resolve() == script:
            return "haproxy-k8s"
        return shlex.quote(str(argv0.absolute()))
    return f"{shlex.quote(sys.executable)} -m haproxy_k8s.cli"


def _path_outside_venv() -> str:
    entries = os.environ.get("PATH", os.defpath).split(os.pathsep)
    if sys.prefix == sys.base_prefix:
        return os.pathsep.join(entries)
    venv_bin = (Path(sys.prefix) / "bin").resolve()
    return os.pathsep.join(e for e in entries if e and Path(e).resolve() != venv_bin)


def _banner(layout: Layout, ports: DemoPorts, standins: list[StandIn], keep: bool) -> str:
    q = shlex.quote
    cmd = _cli_command()
    cfg = f"--config-dir {q(str(layout.config_dir))}"
    balancer = f"https://{BALANCER_HOST}:{ports.balancer}"
    stats = f"http://{BALANCER_HOST}:{ports.stats}"
    metrics = f"http://{BALANCER_HOST}:{ports.metrics}/metrics"
    configured, spare = standins[:len(NODES)], standins[len(NODES)]
    nodes = ", ".join(f"{s.name} on {s.host}:{s.port}" for s in configured)
    dropin = q(str(layout.conf_d / f"20-{spare.name}.toml"))
    control = q(str(layout.control_dir / configured[1].name))
    first = configured[0].name
    lines = [
        "",
        f"haproxy-k8s demo: HAProxy balances {CLUSTER} over three stand-in kube-apiservers",
        f"({nodes}).",
        "",
        f"  balancer    {balancer}",
        f"  stats page  {stats}/stats",
        f"  metrics     {stats}/metrics (HAProxy), {metrics} (haproxy-k8s)",
        f"  directory   {layout.root}  (config/ certs/ state/ nodes/)",
        "",
        "Try these in another terminal:",
        "",
        '# which apiserver answered ("node"); repeat it to see the balancing',
        f"  curl -k {balancer}/version",
        f"  curl --cacert {q(str(layout.cert_dir / 'ca.crt'))} {balancer}/readyz",
        "",
        "# node health as HAProxy sees it (exit code 0: every node UP)",
        f"  {cmd} status {cfg}",
        "",
        f"# add a 4th node: {spare.name} already listens on {spare.host}:{spare.port}",
        f"  cat > {dropin} <<'EOF'",
        *add_node_dropin(spare.host, spare.port).splitlines(),
        "EOF",
        "# and remove it again (its connections are drained first)",
        f"  rm {dropin}",
        "",
        "# make a node fail, then bring it back (watch `status` or the stats page)",
        f"  echo unready > {control}   # /readyz answers 500, like an apiserver shutting down",
        f"  echo refuse > {control}    # the apiserver process is gone",
        f"  echo hang > {control}      # it accepts connections and never answers",
        f"  echo serve > {control}     # healthy again",
        "",
        "# take a node out for maintenance (a kubeadm upgrade), then put it back",
        f"  {cmd} drain {CLUSTER}/{first} --wait --timeout 30s {cfg}",
        f"  {cmd} ready {CLUSTER}/{first} {cfg}",
        "",
        "Ctrl-C stops the demo: HAProxy and the stand-ins stop, and "
        + ("the directory is kept." if keep else "the directory is removed."),
        "",
    ]
    return "\n".join(lines)


class _DemoDaemon(Daemon):
    """The real daemon, telling the demo once it is ready (or cleaning up if it cannot start)."""

    def __init__(self, config_dir: Path, on_started: Callable[[], None]) -> None:
        super().__init__(config_dir)
        self.on_ready = on_started

    def start(self) -> None:
        try:
            super().start()
        except BaseException:
            # run() only stops HAProxy for a daemon that started: do it here.
            if self.applier is not None and self.applier.master.alive():
                self.applier.master.stop()
            raise


# -- node control files -----------------------------------------------------------------


class _NodeControl:
    """`echo unready > nodes/NAME` switches that stand-in's behaviour.

    A thread reads the files every CONTROL_POLL seconds; it only calls the stand-ins' own
    thread-safe setters.
    """

    def __init__(self, directory: Path, standins: list[StandIn]) -> None:
        self.directory = directory
        self.standins = {s.name: s for s in standins}
        self._current = {name: "serve" for name in self.standins}
        self._warned: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-node-control", daemon=True)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in self.standins:
            (self.directory / name).write_text("serve\n")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(CONTROL_POLL):
            for name, standin in self.standins.items():
                self._apply(name, standin, self._read(name))

    def _read(self, name: str) -> str:
        try:
            return (self.directory / name).read_text().strip().lower() or "serve"
        except OSError:
            return "serve"  # a deleted file means "back to normal"

    def _apply(self, name: str, standin: StandIn, word: str) -> None:
        if word == self._current[name]:
            return
        if word not in CONTROL_WORDS:
            if (name, word) not in self._warned:
                self._warned.add((name, word))
                log.warning("nodes/%s: %r is not one of %s", name, word, ", ".join(CONTROL_WORDS))
            return
        try:
            standin.readyz_status = 500 if word == "unready" else 200
            standin.set_mode(cast(Mode, "serve" if word == "unready" else word))
        except OSError as e:
            log.warning("nodes/%s: %s", name, e)
            return
        self._current[name] = word
        log.info("demo: stand-in %s now %s", name, word)

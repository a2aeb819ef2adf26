"""The baseline: what most setups do today, as one small static script.

    python -m bench.baseline --config-dir DIR

1. Render haproxy.cfg from the drop-ins (the same loader and template as haproxy-k8s,
   minus the server-state file, which nothing here would ever dump), start HAProxy in
   master-worker mode (`haproxy -W -db -S master.sock -f haproxy.cfg -p haproxy.pid`, the
   way a systemd unit with `ExecReload=kill -USR2 $MAINPID` runs it).
2. Watch DIR with inotify (watchdog's inotify observer, the library haproxy-k8s uses).
   On every event for the main file or a drop-in (hidden and editor files ignored, as
   haproxy-k8s does): load + render at once (no debounce); if the text differs from what
   was last written (like confd / consul-template), overwrite haproxy.cfg and send the
   master SIGUSR2. No `haproxy -c` first, no runtime API, no check that the reload worked.

The master socket (`-S`) is only there so the benchmark can count reloads (`show proc`);
the script never uses it. It writes `applied` (a counter) for the same reason.
SIGTERM/SIGINT stop HAProxy and the script.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from haproxy_k8s.config.loader import load_config
from haproxy_k8s.config.statedir import DROPIN_DIR, MAIN_FILE, is_ignored
from haproxy_k8s.errors import HaproxyK8sError
from haproxy_k8s.haproxy.paths import StatePaths
from haproxy_k8s.haproxy.render import render

log = logging.getLogger("baseline")


def render_dir(config_dir: Path) -> tuple[str, StatePaths, str]:
    config = load_config(config_dir)
    config = dataclasses.replace(
        config, haproxy=dataclasses.replace(config.haproxy, server_state=False))
    paths = StatePaths(Path(config.haproxy.state_dir))
    return render(config, paths), paths, config.haproxy.binary


class Baseline(FileSystemEventHandler):
    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.main = os.path.join(config_dir, MAIN_FILE)
        self.dropins = os.path.join(config_dir, DROPIN_DIR)
        self.text, self.paths, self.binary = render_dir(config_dir)
        self.applied = 0
        self.master: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.config.write_text(self.text)
        self.paths.master_socket.unlink(missing_ok=True)
        with (self.paths.root / "haproxy.log").open("ab") as out:
            self.master = subprocess.Popen(
                [self.binary, "-W", "-db", "-S", f"{self.paths.master_socket},mode,600",
                 "-f", str(self.paths.config), "-p", str(self.paths.haproxy_pid)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self._count()

    def _count(self) -> None:
        (self.paths.root / "applied").write_text(f"{self.applied}\n")

    def _ours(self, path: str) -> bool:
        inside = path == self.main or path.startswith(self.dropins + os.sep)
        return inside and not is_ignored(os.path.basename(path))

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [os.fsdecode(p) for p in (event.src_path, getattr(event, "dest_path", "")) if p]
        if any(self._ours(p) for p in paths):
            self.apply()

    def apply(self) -> None:
        with self.lock:
            try:
                text, _, _ = render_dir(self.config_dir)
            except HaproxyK8sError as e:
                log.error("render failed: %s", e)
                return
            if text == self.text or self.master is None:
                return
            self.paths.config.write_text(text)
            self.text = text
            os.kill(self.master.pid, signal.SIGUSR2)
            self.applied += 1
            self._count()

    def stop(self) -> None:
        if self.master is None or self.master.poll() is not None:
            return
        self.master.terminate()
        try:
            self.master.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.master.kill()
            self.master.wait(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--config-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    baseline = Baseline(args.config_dir)
    observer = Observer()
    observer.schedule(baseline, str(args.config_dir), recursive=True)
    baseline.start()
    observer.start()
    try:
        while not stop.wait(0.5):
            if baseline.master is not None and baseline.master.poll() is not None:
                log.error("haproxy exited with %s", baseline.master.returncode)
                return 1
    finally:
        observer.stop()
        with contextlib.suppress(RuntimeError):
            observer.join(timeout=5)
        baseline.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

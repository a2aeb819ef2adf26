"""A config dir that is replaced (rm -rf and restored, a directory swapped in by mv,
a config-management tool) is watched again: later edits still apply."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess
from helpers import free_port, http_get, wait_until
from watchdog.events import FileSystemEvent

from haproxy_k8s.demo.standin import StandIn
from haproxy_k8s.sources import watcher as watcher_mod
from haproxy_k8s.sources.watcher import DirWatcher

pytestmark = pytest.mark.usefixtures("haproxy_bin")


class Setup:
    def __init__(self, root: Path, config: ConfigDir, daemon: DaemonProcess, port: int,
                 nodes: list[StandIn]) -> None:
        self.root, self.config, self.daemon, self.port, self.nodes = (
            root, config, daemon, port, nodes)

    def serve_only(self, directory: Path, node: StandIn) -> None:
        """Write cluster-0 with `node` alone into the config dir at `directory`."""
        (directory / "conf.d" / "10-cluster-0.toml").write_text(
            f'[clusters.cluster-0]\nbind = ["{BALANCER}:{self.port}"]\n'
            f'[clusters.cluster-0.nodes.{node.name}]\naddress = "{node.host}"\n'
            f"port = {node.port}\n")

    def answers(self, name: str) -> bool:
        status, body = http_get(BALANCER, self.port, "/version")
        return status == 200 and json.loads(body)["node"] == name


@pytest.fixture
def setup(short_tmp: Path, standin_factory: StandInFactory) -> Iterator[Setup]:
    nodes = [standin_factory(f"m{i}", tls=False) for i in (1, 2)]
    # The config dir is a child of short_tmp, so the test can replace it whole.
    config = ConfigDir(short_tmp / "etc")
    # The state dir outside the config dir, so the test can replace that whole.
    main = config.root / "haproxy-k8s.toml"
    main.write_text(main.read_text().replace(str(config.state_dir), str(short_tmp / "state")))
    config.state_dir = short_tmp / "state"
    port = free_port(BALANCER)
    config.cluster("cluster-0", port, {"m1": (nodes[0].host, nodes[0].port)})
    daemon = DaemonProcess(config)
    daemon.log = short_tmp / "daemon.log"  # outlives the config dir
    daemon.start()
    try:
        yield Setup(short_tmp, config, daemon, port, nodes)
    finally:
        daemon.stop()


def test_removed_and_restored_dir_is_watched_again(setup: Setup) -> None:
    s = setup
    saved = s.root / "saved"
    shutil.copytree(s.config.root, saved, ignore=shutil.ignore_patterns("*.log"))
    generation = s.daemon.generation()
    shutil.rmtree(s.config.root)
    shutil.copytree(saved, s.config.root)
    s.serve_only(s.config.root, s.nodes[1])
    wait_until(lambda: s.daemon.generation() > generation, 10.0, message="restored dir applied")
    wait_until(lambda: s.answers("m2"), 5.0, message="the edit in the restored dir serves")
    # And the new directory is watched from now on.
    generation = s.daemon.generation()
    s.serve_only(s.config.root, s.nodes[0])
    wait_until(lambda: s.daemon.generation() > generation, 10.0, message="a later edit applies")
    wait_until(lambda: s.answers("m1"), 5.0)


def test_directory_swapped_in_by_rename_is_watched(setup: Setup) -> None:
    s = setup
    new = s.root / "etc.new"
    shutil.copytree(s.config.root, new, ignore=shutil.ignore_patterns("*.log"))
    s.serve_only(new, s.nodes[1])
    generation = s.daemon.generation()
    os.rename(s.config.root, s.root / "etc.old")  # what `mv` and config tools do
    os.rename(new, s.config.root)
    wait_until(lambda: s.daemon.generation() > generation, 10.0, message="swapped dir applied")
    wait_until(lambda: s.answers("m2"), 5.0)
    generation = s.daemon.generation()
    s.serve_only(s.config.root, s.nodes[0])
    wait_until(lambda: s.daemon.generation() > generation, 10.0, message="a later edit applies")
    wait_until(lambda: s.answers("m1"), 5.0)


def test_reads_are_not_events_and_writes_are(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The inotify mask leaves reads out: a start (and each `status`) reads every
    drop-in, and those opens must not even reach the watcher's handler."""
    seen: list[str] = []
    handle = watcher_mod._Handler.on_any_event

    def counting(self: watcher_mod._Handler, event: FileSystemEvent) -> None:
        seen.append(event.event_type)
        handle(self, event)

    monkeypatch.setattr(watcher_mod._Handler, "on_any_event", counting)
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    dropin = conf_d / "10-a.toml"
    dropin.write_text("[defaults]\nfall = 3\n")
    posted: list[tuple[str, bool]] = []
    watcher = DirWatcher(tmp_path, lambda path, complete: posted.append((path, complete)))
    watcher.start()
    try:
        for _ in range(50):
            dropin.read_bytes()
        dropin.write_text("[defaults]\nfall = 4\n")  # the write is the news, and its close
        wait_until(lambda: (str(dropin), True) in posted, message="the write posted")
        assert all(path == str(dropin) for path, _ in posted), posted
        assert len(posted) <= 4, posted  # created/modified/closed: not one per read
        assert "opened" not in seen and "closed_no_write" not in seen, seen
    finally:
        watcher.stop()

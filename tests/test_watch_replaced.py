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

from haproxy_k8s.demo.standin import StandIn

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

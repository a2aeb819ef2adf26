"""A runtime change is live before its file is validated; the file is published only
after `haproxy -c` passed (apply/deferred.py)."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
from conftest import StandInFactory
from haproxyutil import cluster, config

from haproxy_k8s.apply.applier import Applier, ApplyAction
from haproxy_k8s.apply.deferred import PendingPublish
from haproxy_k8s.config.model import Config, Node
from haproxy_k8s.errors import StateDirError, ValidationError
from haproxy_k8s.haproxy.check import check_config
from haproxy_k8s.haproxy.runtime import RuntimeClient


def _refuse(cfg: Config) -> None:
    raise ValidationError("haproxy -c: [ALERT] bad line")


def test_a_refused_file_is_reported_and_not_published() -> None:
    pending = PendingPublish()
    pending.defer(Config())
    published: list[Config] = []

    error = pending.finish(_refuse, published.append)
    assert isinstance(error, ValidationError) and not pending.waiting and published == []
    assert pending.finish(_refuse, published.append) is None  # once only


def test_the_worker_verdict_is_published_on_collect() -> None:
    pending, ended = PendingPublish(), threading.Event()
    config, published = Config(), list[Config]()
    pending.defer(config)
    assert pending.start(lambda cfg: None, ended.set)
    assert ended.wait(10.0)
    assert pending.collect(published.append) is None
    assert published == [config] and not pending.waiting


def test_a_superseded_verdict_is_dropped_and_the_newer_config_stays_pending() -> None:
    pending, ended, release = PendingPublish(), threading.Event(), threading.Event()
    older, newer = Config(), Config(clusters=())
    published: list[Config] = []
    pending.defer(older)
    def slow(cfg: Config) -> None:
        release.wait(10.0)

    assert pending.start(slow, ended.set)
    assert not pending.start(lambda cfg: None, ended.set)  # one worker at a time
    pending.defer(newer)  # a second runtime change while the first file is checked
    release.set()
    assert ended.wait(10.0)
    assert pending.collect(published.append) is None
    assert published == [] and pending.config is newer


def test_a_full_disk_keeps_the_file_pending_for_a_retry() -> None:
    pending = PendingPublish()
    pending.defer(Config())

    def full(cfg: Config) -> None:
        raise OSError(28, "No space left on device")

    error = pending.finish(full, lambda cfg: None)
    assert isinstance(error, StateDirError) and pending.waiting


@pytest.mark.usefixtures("haproxy_bin")
def test_runtime_change_is_live_before_its_file_is_published(
        haproxy_bin: str, short_tmp: Path, standin_factory: StandInFactory) -> None:
    a, b = standin_factory("m1"), standin_factory("m2")
    first = config(haproxy_bin, short_tmp / "state", [cluster("c0", [a])])
    applier = Applier(first)
    try:
        assert applier.apply(first).action is ApplyAction.START
        before = applier.paths.config.read_text()
        c0 = first.clusters[0]
        second = dataclasses.replace(first, clusters=(dataclasses.replace(
            c0, nodes=(*c0.nodes, Node("m2", b.host, b.port))),))

        outcome = applier.apply(second)
        assert outcome.action is ApplyAction.RUNTIME, outcome
        # Live in HAProxy, while haproxy.cfg is still the last validated file.
        assert ("be_c0", "m2") in RuntimeClient(applier.paths.admin_socket).show_stat()
        assert applier.paths.config.read_text() == before and applier.pending.waiting

        assert applier.finish_pending() is None
        published = applier.paths.config.read_text()
        assert "server m2 " in published and not applier.pending.waiting
        assert applier.paths.last_good.read_text() == published
        check_config(haproxy_bin, applier.paths.config)  # raises if HAProxy refuses it

        # Any other apply finishes a pending publication first: a reload never
        # reads an unvalidated file.
        applier.apply(second)
        assert not applier.pending.waiting
    finally:
        applier.master.stop(grace=2.0)

"""Debounce: quiet time after the last change, but never longer than the ceiling."""

from __future__ import annotations

from haproxy_k8s.config.model import WatchSettings
from haproxy_k8s.daemon.debounce import Debouncer


def due(d: Debouncer, now: float) -> float:
    value = d.due_in(now)
    assert value is not None
    return round(value, 6)


def test_nothing_pending() -> None:
    assert Debouncer(0.2, 2.0).due_in(10.0) is None


def test_quiet_time_after_last_change() -> None:
    d = Debouncer(0.2, 2.0)
    d.touch(10.0)
    d.touch(10.1)
    assert due(d, 10.1) == 0.2
    assert due(d, 10.3) <= 0


def test_constant_stream_still_applies_at_the_ceiling() -> None:
    d = Debouncer(0.2, 2.0)
    t = 10.0
    while t < 12.5:
        d.touch(t)
        t += 0.1
    assert due(d, t) <= 0  # 2 s after the first change


def test_clear() -> None:
    d = Debouncer(0.2, 2.0)
    d.touch(1.0)
    d.clear()
    assert d.due_in(5.0) is None


def test_complete_writes_only_wait_the_settle_time() -> None:
    d = Debouncer(0.2, 2.0, settle=0.02)
    d.touch(10.0, "conf.d/a.toml", complete=False)  # created: still being written
    assert due(d, 10.0) == 0.2
    d.touch(10.01, "conf.d/a.toml", complete=True)  # closed after writing: whole
    assert due(d, 10.01) == 0.02


def test_another_write_in_progress_keeps_the_full_debounce() -> None:
    d = Debouncer(0.2, 2.0, settle=0.02)
    d.touch(10.0, "conf.d/a.toml", complete=False)
    d.touch(10.0, "conf.d/b.toml", complete=False)
    d.touch(10.01, "conf.d/a.toml", complete=True)
    assert due(d, 10.01) == 0.2  # b.toml is not closed yet
    d.clear()
    assert not d.in_progress


def test_a_shorter_debounce_caps_the_settle_time() -> None:
    d = Debouncer(0.2, 2.0)
    d.configure(WatchSettings(debounce_ms=10, settle_ms=20, max_wait_ms=1000))
    assert d.settle == 0.01


def test_configure_takes_the_watch_settings() -> None:
    d = Debouncer(0.2, 2.0)
    d.configure(WatchSettings(debounce_ms=500, settle_ms=50, max_wait_ms=3000))
    d.touch(10.0, "conf.d/a.toml")
    assert due(d, 10.0) == 0.5
    d.touch(10.2, "conf.d/a.toml", complete=True)
    assert due(d, 10.2) == 0.05


def test_the_ceiling_counts_from_the_first_change_after_clear() -> None:
    d = Debouncer(0.2, 1.0)
    d.touch(10.0)
    d.clear()  # applied
    t = 20.0
    while t < 20.9:  # a new stream of edits, 0.1 s apart
        d.touch(t)
        assert due(d, t) > 0, t
        t = round(t + 0.1, 6)
    d.touch(t)
    assert due(d, t) == 0.1  # 1 s after 20.0, not after 10.0

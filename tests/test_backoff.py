"""The master-restart backoff, on a fake clock: the times are passed in, nothing waits."""

from __future__ import annotations

import pytest

from haproxy_k8s.backoff import Backoff


class Supervisor:
    """The daemon's use of Backoff, reduced to a clock and a process that is up or not."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.now = 0.0
        self.restarts: list[float] = []

    def tick(self, alive: bool) -> None:
        if not alive and self.backoff.due(self.now):
            self.backoff.failed(self.now)
            self.restarts.append(self.now)
        elif alive:
            self.backoff.reset_if_stable(self.now)

    def run(self, until: float, alive: bool, step: float = 0.5) -> None:
        while self.now < until:
            self.tick(alive)
            self.now += step


def test_first_restart_is_immediate() -> None:
    assert Backoff(1.0, 30.0).due(0.0)


def test_waits_double_up_to_the_ceiling() -> None:
    b = Backoff(1.0, 30.0)
    now, waits = 100.0, []
    for _ in range(8):
        assert b.due(now)
        waits.append(b.failed(now))
        assert not b.due(now + waits[-1] - 0.001)
        now += waits[-1]
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_process_that_keeps_dying_is_restarted_ever_more_slowly() -> None:
    s = Supervisor(Backoff(1.0, 30.0))
    s.run(until=100.0, alive=False)
    gaps = [b - a for a, b in zip(s.restarts, s.restarts[1:], strict=False)]
    assert s.restarts[0] == 0.0
    assert gaps[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert set(gaps[5:]) == {30.0}


def test_a_stable_run_resets_the_delay() -> None:
    s = Supervisor(Backoff(1.0, 30.0, stable=60.0))
    s.run(until=10.0, alive=False)  # restarts at 0, 1, 3, 7: the next wait is 16 s
    assert s.backoff.delay == 16.0
    s.run(until=70.0, alive=True)  # up, but not yet 60 s past the last allowed restart
    assert s.backoff.delay == 16.0
    s.run(until=80.0, alive=True)
    assert s.backoff.delay == 1.0
    died_at = s.now
    s.run(until=died_at + 5.0, alive=False)
    assert s.restarts[-3:] == [died_at, died_at + 1.0, died_at + 3.0]


def test_a_short_run_does_not_reset_the_delay() -> None:
    s = Supervisor(Backoff(1.0, 30.0, stable=60.0))
    s.run(until=40.0, alive=False)
    delay = s.backoff.delay
    s.run(until=s.now + 30.0, alive=True)
    s.tick(alive=False)
    assert s.backoff.delay == min(delay * 2, 30.0)


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 30.0), (-1.0, 30.0), (5.0, 1.0)])
def test_nonsense_bounds_are_refused(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, maximum)

"""How a reload is judged from `show proc` (2.6) or the `Success=` line (2.7+).

2.6 is what runs here; the 2.7+ replies are the documented form (HAPROXY-NOTES.md),
so those cases are checked on the pure functions only.
"""

from __future__ import annotations

from haproxy_k8s.haproxy.master import _reload_settled, _reload_succeeded
from haproxy_k8s.haproxy.replies import Process, ProcTable

V = "2.6.12"


def table(reloads: int, failed: int, workers: list[int]) -> ProcTable:
    return ProcTable(Process(1, "master", reloads, 10, V), failed,
                     tuple(Process(pid, "worker", 0, 0, V) for pid in workers))


BEFORE = table(3, 0, [100])


def test_26_success_new_worker_and_no_failure() -> None:
    after = table(4, 0, [200])
    assert _reload_settled(BEFORE, after, "")
    assert _reload_succeeded(BEFORE, after, "")


def test_26_failure_keeps_old_worker_and_counts_it() -> None:
    after = table(4, 1, [100])
    assert _reload_settled(BEFORE, after, "")
    assert not _reload_succeeded(BEFORE, after, "")


def test_26_not_settled_while_the_master_has_not_counted_it() -> None:
    assert not _reload_settled(BEFORE, table(3, 0, [100]), "")
    # Counted, but the new worker is not listed yet: keep polling.
    assert not _reload_settled(BEFORE, table(4, 0, [100]), "")


def test_27_success_and_failure_lines() -> None:
    assert _reload_succeeded(BEFORE, table(4, 0, [200]), "Success=1\n--\n[NOTICE] loaded\n")
    failed = "Success=0\n--\n[ALERT] cannot bind socket\n"
    assert _reload_settled(BEFORE, table(4, 0, [100]), failed)
    assert not _reload_succeeded(BEFORE, table(4, 0, [100]), failed)

"""The event log's per-node histories: kept for nodes that exist, dropped for nodes gone."""

from __future__ import annotations

from haproxy_k8s.daemon.events import EventLog


def test_forget_drops_histories_but_not_the_ring_nor_an_operators_last_action() -> None:
    log = EventLog(ring=100, per_object=5)
    for i in range(10):
        log.record("config", f"c{i}/n4", "added (127.0.10.4:9 weight 100)")
        log.record("config", f"c{i}/n4", "removed from the config (draining until its "
                   "sessions end)")
    log.record("operator", "c3/n4", "drain by alice")
    log.record("operator", "c3/n4", "maint by bob")
    log.record("config", "c3/n4", "deleted from HAProxy")
    log.record("config", "c0/n1", "added (127.0.10.1:9 weight 100)")
    log.forget([f"c{i}/n4" for i in range(10)] + ["c9/never"])
    assert sorted(log.objects()) == ["c0/n1", "c3/n4"]
    assert [e.message for e in log.history("c3/n4")] == ["maint by bob"]
    assert len(log.history("c0/n1")) == 1
    assert len(log.since(0)) == 24  # `events` still has every one

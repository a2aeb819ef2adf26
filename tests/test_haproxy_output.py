"""HAProxy's own output lines in the daemon's journal: news of one server is left to
the daemon's events (which name the node), everything else is kept."""

from __future__ import annotations

import logging

import pytest

from haproxy_k8s.haproxy.master import journal_level


@pytest.mark.parametrize(("line", "level"), [
    ("[WARNING]  (24723) : Server be_c0000/n1 is DOWN, reason: Layer4 connection problem, "
     'info: "Connection refused", check duration: 20ms. 2 active and 0 backup servers left.',
     logging.DEBUG),
    ("[WARNING]  (24723) : Server be_c-1/m.2 is UP, reason: Layer4 check passed, "
     "check duration: 0ms. 1 active and 0 backup servers online.", logging.DEBUG),
    ("[WARNING]  (812) : Health check for server be_c0/m1 failed, reason: Layer4 timeout, "
     "check duration: 2001ms, status: 2/3 UP.", logging.DEBUG),
    ("[ALERT]    (24723) : backend 'be_c0001' has no server available!", logging.WARNING),
    ("[NOTICE]   (24717) : New worker (24723) forked", logging.INFO),
    # A reload: each server's state taken from the state file, each old proxy stopping.
    ("[WARNING]  (12357) : config : Server be_c0999/n1 is DOWN, changed from server-state "
     "after a reload. 2 active and 0 backup servers left.", logging.DEBUG),
    ("[WARNING]  (12360) : Proxy fe_c0001 stopped (cumulated conns: FE: 0, BE: 0).",
     logging.DEBUG),
    ("[WARNING]  (12360) : Stopping backend be_c0001 in 0 ms.", logging.DEBUG),
    ("[NOTICE]   (12357) : Former worker (12360) exited with code 0 (Exit)", logging.INFO),
    ("[ALERT]    (1) : config : parsing [haproxy.cfg:12] : unknown keyword 'Server'",
     logging.WARNING),
])
def test_journal_level(line: str, level: int) -> None:
    assert journal_level(line) == level

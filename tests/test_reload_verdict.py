"""How a reload is judged from `show proc` (2.6) or the `Success=` line (2.7+).

2.6 is what runs here: its `show proc` texts below are captured from Debian 12's
haproxy 2.6.12 (a reload that worked, then one refused for a bad keyword). 2.7+
cannot run here, so its replies are built from HAProxy's own source
(haproxy/haproxy src/mworker.c: `cli_io_handler_show_loadstatus` prints
"Success=1|0", then "--" when there are startup logs; `cli_parse_reload` answers
"Success=0\\n--\\nAnother reload is still in progress.\\n" on 3.1+), with startup
log lines as the 2.6.12 master printed them for the same reloads.
"""

from __future__ import annotations

import pytest

from haproxy_k8s.haproxy.replies import (
    Process,
    ProcTable,
    parse_show_proc,
    reload_verdict,
    reload_verdict_26,
    reload_verdict_27,
)

V = "2.6.12"


def table(reloads: int, failed: int, workers: list[int]) -> ProcTable:
    return ProcTable(Process(1, "master", reloads, 10, V), failed,
                     tuple(Process(pid, "worker", 0, 0, V) for pid in workers))


def settled(before: ProcTable, after: ProcTable, reply: str) -> bool:
    return reload_verdict(before, after, reply) is not None


def succeeded(before: ProcTable, after: ProcTable, reply: str) -> bool:
    return reload_verdict(before, after, reply) is True


BEFORE = table(3, 0, [100])


def test_26_success_new_worker_and_no_failure() -> None:
    after = table(4, 0, [200])
    assert settled(BEFORE, after, "")
    assert succeeded(BEFORE, after, "")


def test_26_failure_keeps_old_worker_and_counts_it() -> None:
    after = table(4, 1, [100])
    assert settled(BEFORE, after, "")
    assert not succeeded(BEFORE, after, "")


def test_26_not_settled_while_the_master_has_not_counted_it() -> None:
    assert not settled(BEFORE, table(3, 0, [100]), "")
    # Counted, but the new worker is not listed yet: keep polling.
    assert not settled(BEFORE, table(4, 0, [100]), "")


def test_27_success_and_failure_lines() -> None:
    assert succeeded(BEFORE, table(4, 0, [200]), "Success=1\n--\n[NOTICE] loaded\n")
    failed = "Success=0\n--\n[ALERT] cannot bind socket\n"
    assert settled(BEFORE, table(4, 0, [100]), failed)
    assert not succeeded(BEFORE, table(4, 0, [100]), failed)


# -- captured on haproxy 2.6.12 -------------------------------------------------------------
HEAD = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n"
SHOW_PROC_BEFORE = HEAD + (
    "10307           master          0 [failed: 0]   0d00h00m00s     2.6.12-1+deb12u4\n"
    "# workers\n"
    "10310           worker          0               0d00h00m00s     2.6.12-1+deb12u4\n"
    "# programs\n\n")
# Right after `reload`: the new worker is listed and the old one is leaving.
SHOW_PROC_RELOADED = HEAD + (
    "10307           master          1 [failed: 0]   0d00h00m00s     2.6.12-1+deb12u4\n"
    "# workers\n"
    "10315           worker          0               0d00h00m00s     2.6.12-1+deb12u4\n"
    "# old workers\n"
    "10310           worker          1               0d00h00m00s     2.6.12-1+deb12u4\n"
    "# programs\n\n")
# A second `reload` onto a config with an unknown keyword: counted, failed, same worker.
SHOW_PROC_REFUSED = HEAD + (
    "10307           master          2 [failed: 1]   0d00h00m00s     2.6.12-1+deb12u4\n"
    "# workers\n"
    "10315           worker          1               0d00h00m00s     2.6.12-1+deb12u4\n"
    "# programs\n\n")


def test_26_captured_success_and_refusal() -> None:
    before, reloaded = parse_show_proc(SHOW_PROC_BEFORE), parse_show_proc(SHOW_PROC_RELOADED)
    refused = parse_show_proc(SHOW_PROC_REFUSED)
    assert reload_verdict_26(before, before) is None
    assert reload_verdict_26(before, reloaded) is True
    assert reload_verdict_26(reloaded, refused) is False
    # 2.6 answers `reload` with nothing at all (seen): the tables decide alone.
    assert reload_verdict(before, reloaded, "") is True
    assert reload_verdict(reloaded, refused, "") is False


# -- 2.7+ replies (HAProxy's source; log lines as the 2.6.12 master printed them) ----------
RELOAD_27_OK = ("Success=1\n--\n"
                "[NOTICE]   (10307) : New worker (10315) forked\n"
                "[NOTICE]   (10307) : Loading success.\n")
RELOAD_27_QUIET_OK = "Success=1\n"  # no startup logs: no "--" either
RELOAD_27_REFUSED = (
    "Success=0\n--\n"
    "[NOTICE]   (10307) : haproxy version is 2.6.12-1+deb12u4\n"
    "[ALERT]    (10307) : config : parsing [/run/haproxy-k8s/haproxy.cfg:50] : "
    "unknown keyword 'bogus_keyword' in 'backend' section\n"
    "[ALERT]    (10307) : config : Fatal errors found in configuration.\n"
    "[WARNING]  (10307) : Loading failure!\n")
RELOAD_31_BUSY = "Success=0\n--\nAnother reload is still in progress.\n"


@pytest.mark.parametrize(("reply", "verdict"), [
    (RELOAD_27_OK, True),
    (RELOAD_27_QUIET_OK, True),
    (RELOAD_27_REFUSED, False),
    (RELOAD_31_BUSY, False),
    ("", None),  # 2.6
    ("Unknown command.\n", None),
])
def test_27_reply_verdict(reply: str, verdict: bool | None) -> None:
    assert reload_verdict_27(reply) is verdict


def test_27_refusal_settles_before_any_new_worker() -> None:
    before, reloaded = parse_show_proc(SHOW_PROC_BEFORE), parse_show_proc(SHOW_PROC_RELOADED)
    counted_same_worker = table(before.master.reloads + 1, 0, sorted(before.worker_pids))
    assert reload_verdict(before, counted_same_worker, RELOAD_27_REFUSED) is False
    # Success=1 still waits until the new worker is listed, as on 2.6.
    assert reload_verdict(before, counted_same_worker, RELOAD_27_OK) is None
    assert reload_verdict(before, reloaded, RELOAD_27_OK) is True

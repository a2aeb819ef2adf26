"""Parsers for the runtime API, on replies captured from HAProxy 2.6.12."""

from __future__ import annotations

import pytest

from haproxy_k8s.haproxy.replies import (
    filter_servers_state,
    parse_servers_state,
    parse_show_proc,
    parse_show_stat,
    parse_uptime,
)

SHOW_PROC = """\
#<PID>          <type>          <reloads>       <uptime>        <version>
3619            master          3 [failed: 0]   0d00h00m30s     2.6.12-1+deb12u4
# workers
4676            worker          0               0d00h00m00s     2.6.12-1+deb12u4
# old workers
3969            worker          1               0d00h00m20s     2.6.12-1+deb12u4
# programs

"""

SHOW_PROC_FAILED = """\
#<PID>          <type>          <reloads>       <uptime>        <version>
3619            master          2 [failed: 1]   0d00h00m25s     2.6.12-1+deb12u4
# workers
3969            worker          1               0d00h00m20s     2.6.12-1+deb12u4
# programs

"""

SERVERS_STATE = """\
1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight \
srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health \
srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord \
srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 be_c0 1 m1 127.0.8.10 2 0 100 100 2 8 2 0 6 0 0 0 - 6443 - 0 0 - - 0
3 be_c0 2 m2 127.0.8.11 2 0 100 100 1 1 0 2 6 0 0 0 - 6443 - 0 0 - - 0

"""


def test_show_proc() -> None:
    table = parse_show_proc(SHOW_PROC)
    assert table.master.pid == 3619 and table.master.reloads == 3
    assert table.failed_reloads == 0
    assert table.worker_pids == {4676}
    assert [w.pid for w in table.old_workers] == [3969]
    assert table.master.uptime_s == 30
    assert table.master.version == "2.6.12-1+deb12u4"


def test_show_proc_after_failed_reload() -> None:
    table = parse_show_proc(SHOW_PROC_FAILED)
    assert table.failed_reloads == 1
    assert table.worker_pids == {3969}


def test_show_proc_without_master_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_show_proc("Unknown command.\n")


@pytest.mark.parametrize(("text", "seconds"), [
    ("0d00h00m30s", 30), ("1d02h03m04s", 93784), ("5s", 5), ("", 0)])
def test_uptime(text: str, seconds: int) -> None:
    assert parse_uptime(text) == seconds


def test_show_stat() -> None:
    rows = parse_show_stat("# pxname,svname,scur,status,\nbe_c0,m1,2,UP,\nbe_c0,m2,0,DOWN,\n\n")
    assert rows == [{"pxname": "be_c0", "svname": "m1", "scur": "2", "status": "UP"},
                    {"pxname": "be_c0", "svname": "m2", "scur": "0", "status": "DOWN"}]
    with pytest.raises(ValueError):
        parse_show_stat("Permission denied\n")


def test_servers_state() -> None:
    rows = parse_servers_state(SERVERS_STATE)
    assert [(r["srv_name"], r["srv_addr"], r["srv_port"]) for r in rows] == [
        ("m1", "127.0.8.10", "6443"), ("m2", "127.0.8.11", "6443")]


def test_filter_servers_state_drops_moved_servers() -> None:
    keep = {("be_c0", "m1", "127.0.8.10", "6443"), ("be_c0", "m2", "127.0.8.11", "7443")}
    text = filter_servers_state(SERVERS_STATE, keep)
    rows = parse_servers_state(text)
    assert [r["srv_name"] for r in rows] == ["m1"]  # m2's port changed: its row must go
    assert text.startswith("1\n# be_id ")

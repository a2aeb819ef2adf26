"""The typed runtime client: every command against the real HAProxy, and the one
reply check on the texts HAProxy 2.6.12 answered (captured with the real binary)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from haproxyutil import BALANCER, config, running, settings
from helpers import free_port, wait_until

from haproxy_k8s.config.model import (
    AdminState,
    Balance,
    Bind,
    CheckKind,
    Cluster,
    Node,
    backend_name,
    cluster_of_backend,
    server_id,
)
from haproxy_k8s.errors import RuntimeApiError
from haproxy_k8s.haproxy.paths import StatePaths
from haproxy_k8s.haproxy.replies import reload_verdict
from haproxy_k8s.haproxy.runtime import (
    SUCCESS_REPLIES,
    Command,
    MasterClient,
    RuntimeClient,
    RuntimeReplyError,
    check_reply,
)
from haproxy_k8s.haproxy.sni import map_files, write_maps

# Replies of HAProxy 2.6.12, as read from the admin socket (trailing newlines included).
WORKED = {
    Command.ADD_SERVER: ["New server registered.\n\n"],
    Command.DEL_SERVER: ["Server deleted.\n"],
    Command.SET_ADDR: [
        "IP changed from '127.0.8.11' to '127.0.8.12', port changed from '17002' to '17003'"
        " by 'stats socket command'\n\n",
        "no need to change the addr, no need to change the port by 'stats socket command'\n\n",
        "IP changed from '127.0.8.12' to '127.0.8.13', no need to change the port by"
        " 'stats socket command'\n\n",
        "no need to change the addr, port changed from '17003' to '17004' by"
        " 'stats socket command'\n\n",
        "no need to change the addr by 'stats socket command'\n\n",
    ],
    Command.SET_STATE: ["\n"],
    Command.SET_WEIGHT: ["\n"],
    Command.SHUTDOWN_SESSIONS: ["\n"],
    Command.ENABLE_HEALTH: ["\n"],
    Command.DISABLE_HEALTH: ["\n"],
    Command.SET_HEALTH: ["\n"],
    Command.ADD_MAP: ["\n"],
    Command.SET_MAP: ["\n"],
    Command.DEL_MAP: ["\n"],
}
REFUSED = {
    Command.ADD_SERVER: ["Already exists a server with the same name in backend.\n\n",
                         "No such backend.\n"],
    Command.DEL_SERVER: ["Only servers in maintenance mode can be deleted.\n",
                         "No such server.\n"],
    Command.SET_ADDR: ["Invalid addr 'bogus' by 'stats socket command'\n\n",
                       "No such server.\n\n"],
    Command.SET_STATE: ["No such server.\n\n",
                        "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n"],
    Command.SET_WEIGHT: ["Absolute weight can only be between 0 and 256 inclusive.\n\n"],
    Command.SHUTDOWN_SESSIONS: ["No such server.\n\n"],
    Command.ENABLE_HEALTH: ["No such server.\n\n"],
    Command.DISABLE_HEALTH: ["No such server.\n\n"],
    Command.SET_HEALTH: ["No such server.\n\n",
                         "'set server <srv> health' expects 'up', 'stopping', or 'down'.\n\n"],
    Command.ADD_MAP: ["Unknown map identifier. Please use #<id> or <file>.\n\n"],
    Command.SET_MAP: ["entry not found.\n\n"],
    Command.DEL_MAP: ["Key not found.\n\n"],
}


def test_every_command_has_a_success_text() -> None:
    assert set(SUCCESS_REPLIES) == set(Command) == set(WORKED) == set(REFUSED)


@pytest.mark.parametrize(("command", "reply"),
                         [(c, r) for c, replies in WORKED.items() for r in replies])
def test_success_replies_pass(command: Command, reply: str) -> None:
    assert check_reply(command, f"{command} x", reply) == reply.strip()


@pytest.mark.parametrize(("command", "reply"),
                         [(c, r) for c, replies in REFUSED.items() for r in replies])
def test_other_replies_raise_with_command_and_text(command: Command, reply: str) -> None:
    with pytest.raises(RuntimeReplyError) as info:
        check_reply(command, f"{command} be_c0/m9", reply)
    assert info.value.reply == reply.strip()
    assert f"{command} be_c0/m9" in str(info.value) and reply.strip() in str(info.value)


def test_a_success_text_for_another_command_is_not_accepted() -> None:
    with pytest.raises(RuntimeReplyError):
        check_reply(Command.SET_STATE, "set server be_c0/m1 state drain", "Server deleted.\n")
    with pytest.raises(RuntimeReplyError):
        check_reply(Command.ADD_SERVER, "add server be_c0/m2 127.0.8.11:1", "\n")


def test_backend_naming_round_trips() -> None:
    assert backend_name("cluster-0") == "be_cluster-0"
    assert server_id("cluster-0", "m1") == "be_cluster-0/m1"
    assert cluster_of_backend("be_cluster-0") == "cluster-0"
    assert cluster_of_backend("fe_cluster-0") is None
    assert Cluster("cluster-0", (), ()).backend == backend_name("cluster-0")


# -- against the real binary ------------------------------------------------------------------
@pytest.fixture
def haproxy(haproxy_bin: str, short_tmp: Path) -> Iterator[StatePaths]:
    """HAProxy with one roundrobin backend be_c0 (dynamic servers allowed) and node m1."""
    node = Node("m1", "127.0.8.10", free_port("127.0.8.10"))
    cluster = Cluster("c0", (Bind(BALANCER, free_port(BALANCER)),), (node,),
                      settings(check=CheckKind.TCP, balance=Balance.ROUNDROBIN))
    with running(config(haproxy_bin, short_tmp, [cluster])) as paths:
        yield paths


def test_membership_commands_on_real_haproxy(haproxy: StatePaths) -> None:
    client, m2 = RuntimeClient(haproxy.admin_socket), server_id("c0", "m2")
    port = free_port("127.0.8.11")
    client.add_server(m2, f"127.0.8.11:{port}", "check inter 1s weight 10")
    client.enable_health(m2)
    client.set_state(m2, AdminState.READY)
    client.set_weight(m2, 50)
    client.set_addr(m2, "127.0.8.12", port)  # address changes
    client.set_addr(m2, "127.0.8.12", port)  # nothing changes: still a success
    client.set_addr(m2, "127.0.8.12", port + 1)  # only the port changes
    client.shutdown_sessions(m2)
    row = client.show_servers_state()[("be_c0", "m2")]
    assert (row["srv_addr"], row["srv_port"], row["srv_uweight"]) == \
        ("127.0.8.12", str(port + 1), "50")
    assert client.show_stat()[("be_c0", "m2")]["addr"] == f"127.0.8.12:{port + 1}"
    client.set_state(m2, AdminState.DRAIN)
    assert client.show_stat()[("be_c0", "m2")]["status"].startswith("DRAIN")
    client.set_state(m2, AdminState.MAINT)
    client.disable_health(m2)
    client.del_server(m2)
    assert ("be_c0", "m2") not in client.show_stat()
    assert client.dump_servers_state().startswith("1\n# be_id ")


def test_map_and_health_commands_on_real_haproxy(haproxy_bin: str, short_tmp: Path) -> None:
    """Two clusters on one bind: the SNI map file, edited live and read back."""
    bind = (Bind(BALANCER, free_port(BALANCER)),)
    tcp = settings(check=CheckKind.TCP, balance=Balance.ROUNDROBIN)
    a = Cluster("a", bind, (Node("m1", "127.0.8.10", free_port("127.0.8.10")),), tcp,
                sni=("a.example",))
    b = Cluster("b", bind, (Node("m1", "127.0.8.11", free_port("127.0.8.11")),), tcp,
                sni=("b.example",))
    cfg = config(haproxy_bin, short_tmp, [a, b])
    paths = StatePaths(short_tmp)
    paths.ensure_root()
    write_maps(map_files(cfg, paths))
    with running(cfg):
        client = RuntimeClient(paths.admin_socket)
        map_file = str(next(iter(map_files(cfg, paths))))
        assert client.show_map(map_file) == {"a.example": "be_a", "b.example": "be_b"}
        client.add_map(map_file, "c.example", "be_b")
        client.set_map(map_file, "a.example", "be_b")
        client.del_map(map_file, "b.example")
        assert client.show_map(map_file) == {"a.example": "be_b", "c.example": "be_b"}
        with pytest.raises(RuntimeReplyError, match="Key not found"):
            client.del_map(map_file, "b.example")
        with pytest.raises(RuntimeReplyError, match="Unknown map identifier"):
            client.show_map(map_file + ".nope")
        client.set_health("be_a/m1", "stopping")
        assert client.show_stat()[("be_a", "m1")]["status"].startswith("NOLB")
        client.set_health("be_a/m1", "up")
        with pytest.raises(ValueError):
            client.set_health("be_a/m1", "sideways")


def test_refusals_name_the_command_and_haproxys_words(haproxy: StatePaths) -> None:
    client = RuntimeClient(haproxy.admin_socket)
    cases: list[tuple[Callable[[], None], str]] = [
        (lambda: client.set_state("be_c0/m9", AdminState.DRAIN), "No such server."),
        (lambda: client.del_server("be_c0/m1"), "Only servers in maintenance mode"),
        (lambda: client.add_server("be_c0/m1", "127.0.8.10:1", ""), "Already exists"),
        (lambda: client.add_server("be_c9/m1", "127.0.8.10:1", ""), "No such backend."),
        (lambda: client.set_weight("be_c0/m1", 999), "Absolute weight"),
        (lambda: client.set_addr("be_c0/m1", "bogus", 1), "Invalid addr 'bogus'"),
    ]
    for call, text in cases:
        with pytest.raises(RuntimeReplyError, match=text) as info:
            call()
        assert info.value.command.split()[0] in ("set", "del", "add")


def test_unreachable_socket_is_a_runtime_api_error(short_tmp: Path) -> None:
    with pytest.raises(RuntimeApiError, match="cannot connect"):
        RuntimeClient(short_tmp / "none.sock", timeout=1.0).show_stat()
    with pytest.raises(RuntimeApiError, match="cannot connect"):
        MasterClient(short_tmp / "none.sock", timeout=1.0).show_proc()


def test_master_reload_judged_by_the_public_verdict(haproxy: StatePaths) -> None:
    master = MasterClient(haproxy.master_socket)
    before = master.show_proc()
    assert before.master.version.startswith("2.") or before.master.version.startswith("3.")
    reply = ""
    with contextlib.suppress(RuntimeApiError):  # 2.6 may drop the connection as it re-execs
        reply = master.reload()

    def verdict() -> bool | None:
        return reload_verdict(before, master.show_proc(), reply)

    assert wait_until(lambda: verdict() is not None, 10.0, message="reload settles")
    assert verdict() is True

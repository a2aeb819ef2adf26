"""`[vip] manage = "unit"` under a real systemd 252 (tests/systemd_box.py).

haproxy-k8s.service (user haproxy, no netlink) renders keepalived.conf;
haproxy-k8s-keepalived.service (root in group haproxy, netlink, CAP_NET_ADMIN/RAW) tests
and runs it; the .path unit reloads it on every publish. The VIP lives on a veth pair made
inside the container's own network namespace (--private-network): 10.231.9.0/24 exists
nowhere else. One node, no peer: keepalived becomes MASTER after its advert timeout.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_until
from systemd_box import KEEPALIVED_UNITS, NODES, UNIT, Box

pytestmark = pytest.mark.slow
CONF_D = "/etc/haproxy-k8s/conf.d"
VIP, LOCAL, IFACE = "10.231.9.1/24", "10.231.9.2/24", "eth-vip"
KEEPALIVED, PATH_UNIT = KEEPALIVED_UNITS[0], KEEPALIVED_UNITS[1]
UNIT_DIR = "/run/haproxy-k8s-keepalived"
VIP_TOML = f"""\
[vip]
address = "{VIP}"
interface = "{IFACE}"
router_id = 51
priority = 150
"""
TEST_DROP_IN = "91-vip-test.toml"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "ha-pair.md"


@pytest.fixture(scope="module")
def vip_box(box: Box) -> Iterator[Box]:
    box.run("systemctl", "stop", KEEPALIVED, PATH_UNIT, UNIT)
    box.run("systemctl", "reset-failed", UNIT)
    box.check("systemctl", "start", *(f"standin@{host}" for host in NODES))
    if IFACE not in box.check("ip", "-o", "link"):
        box.check("ip", "link", "add", IFACE, "type", "veth", "peer", "name", f"{IFACE}-p")
        box.check("ip", "addr", "add", LOCAL, "dev", IFACE)
    for link in (IFACE, f"{IFACE}-p"):
        box.check("ip", "link", "set", link, "up")
    # udev makes /dev/net/tun 0666 on every Debian (50-udev-default.rules); the container
    # has no udev, and nspawn creates the node 0600.
    box.check("chmod", "0666", "/dev/net/tun")
    box.write(f"{CONF_D}/05-vip.toml", VIP_TOML)
    box.check("systemctl", "enable", PATH_UNIT)
    try:
        yield box
    finally:
        box.run("systemctl", "disable", "--now", PATH_UNIT)
        box.run("systemctl", "stop", KEEPALIVED)
        for name in ("05-vip.toml", TEST_DROP_IN):
            (box.root / CONF_D.lstrip("/") / name).unlink(missing_ok=True)
        box.run("ip", "link", "del", IFACE)
        box.run("haproxy-k8s", "reload")


def vip_up(box: Box) -> bool:
    return f"inet {VIP} " in box.check("ip", "-o", "addr", "show", "dev", IFACE)


def vip_status(box: Box) -> dict[str, object]:
    vip: dict[str, object] = box.status().get("vip") or {}
    return vip


def keepalived_pid(box: Box) -> str:
    return box.show("MainPID", KEEPALIVED)


def installed(box: Box) -> str:
    return box.check("cat", f"{UNIT_DIR}/keepalived.conf")


def test_start_brings_the_vip_up(vip_box: Box) -> None:
    vip_box.check("systemctl", "start", UNIT, KEEPALIVED, PATH_UNIT, timeout=120)
    wait_until(lambda: vip_up(vip_box), 10.0, interval=0.2, message="the VIP on eth-vip")
    wait_until(lambda: vip_status(vip_box).get("role") == "MASTER", 10.0, interval=0.2)
    vip = vip_status(vip_box)
    assert vip["addresses"] == [VIP] and vip["fit"] is True, vip
    assert vip["keepalived_config"] == "applied" and vip["error"] is None, vip
    assert str(vip["keepalived_pid"]) == keepalived_pid(vip_box)
    table = vip_box.run("haproxy-k8s", "status").stdout
    assert f"vip:      MASTER for {VIP} on {IFACE}" in table, table


def test_priority_change_reloads_keepalived_through_the_path_unit(vip_box: Box) -> None:
    pid = keepalived_pid(vip_box)
    vip_box.write(f"{CONF_D}/{TEST_DROP_IN}", "[vip]\npriority = 120\n")
    wait_until(lambda: "priority 120" in installed(vip_box), 10.0, interval=0.2,
               message="the new keepalived.conf installed")
    wait_until(lambda: vip_status(vip_box).get("keepalived_config") == "applied", 10.0)
    assert keepalived_pid(vip_box) == pid  # reloaded (SIGHUP), not restarted
    assert vip_box.show("Result", "haproxy-k8s-keepalived-reload.service") == "success"
    assert vip_status(vip_box)["priority"] == 120
    assert vip_up(vip_box)


def test_config_keepalived_refuses_keeps_the_old_one_running(vip_box: Box) -> None:
    pid, before = keepalived_pid(vip_box), installed(vip_box)
    cursor = vip_box.cursor()
    # Valid for the schema and for the daemon (which cannot see interfaces): only the
    # keepalived unit, with netlink, can tell that eth-nope does not exist.
    vip_box.write(f"{CONF_D}/{TEST_DROP_IN}", '[vip]\ninterface = "eth-nope"\n')
    wait_until(lambda: vip_status(vip_box).get("keepalived_config") == "refused", 10.0,
               interval=0.2, message="the keepalived unit's refusal in status")
    error = str(vip_status(vip_box)["error"])
    assert "eth-nope" in error and "previous one kept" in error, error
    assert installed(vip_box) == before
    assert keepalived_pid(vip_box) == pid and vip_box.show("ActiveState", KEEPALIVED) == "active"
    assert vip_up(vip_box)
    journal = vip_box.check("journalctl", "-u", KEEPALIVED, f"--after-cursor={cursor}", "-q")
    assert "Reload failed" in journal and "eth-nope" in journal, journal
    table = vip_box.run("haproxy-k8s", "status").stdout
    assert "vip error: keepalived unit refused" in table, table
    # Fixed: the next publish goes through.
    vip_box.write(f"{CONF_D}/{TEST_DROP_IN}", "[vip]\npriority = 130\n")
    wait_until(lambda: "priority 130" in installed(vip_box), 10.0, interval=0.2)
    wait_until(lambda: vip_status(vip_box).get("error") is None, 10.0, interval=0.2)


def test_stop_removes_the_vip(vip_box: Box) -> None:
    vip_box.check("systemctl", "stop", KEEPALIVED)
    assert not vip_up(vip_box)
    assert vip_box.show("ActiveState") == "active"  # the balancer itself serves on


def test_keepalived_unit_exposure_is_what_the_docs_say(vip_box: Box) -> None:
    claimed = re.search(r"exposure (\d\.\d), `systemd-analyze security`", DOCS.read_text())
    assert claimed, "docs/ha-pair.md states the keepalived unit's exposure"
    out = vip_box.check("systemd-analyze", "security", "--no-pager", KEEPALIVED)
    measured = re.search(rf"Overall exposure level for {re.escape(KEEPALIVED)}: (\d+\.\d)", out)
    assert measured, out
    assert measured.group(1) == claimed.group(1), out


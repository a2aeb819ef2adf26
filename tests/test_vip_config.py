"""[vip]: validation (file and key in every error), rendering, and the config test."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from helpers import require_tool

from haproxy_k8s.config.loader import load_config
from haproxy_k8s.errors import ConfigError
from haproxy_k8s.haproxy.paths import StatePaths
from haproxy_k8s.vip.manager import config_digest, fit_reason, read_password
from haproxy_k8s.vip.model import VipSettings
from haproxy_k8s.vip.notify import parse_event
from haproxy_k8s.vip.render import VipPaths, advert_text, render

CLUSTER = """\
[clusters.c0]
bind = ["127.0.8.1:6443"]
[clusters.c0.nodes.m1]
address = "127.0.8.10"
"""
VIP = """\
[vip]
address = "192.168.8.1/24"
interface = "eth1"
router_id = 51
priority = 150
peers = ["192.168.8.3"]
"""


def config_dir(tmp_path: Path, vip: str) -> Path:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-cluster.toml").write_text(CLUSTER)
    (tmp_path / "conf.d" / "20-vip.toml").write_text(textwrap.dedent(vip))
    return tmp_path


def test_vip_parses_with_defaults(tmp_path: Path) -> None:
    vip = load_config(config_dir(tmp_path, VIP)).vip
    assert vip == VipSettings(addresses=("192.168.8.1/24",), interface="eth1", router_id=51,
                              priority=150, peers=("192.168.8.3",))
    assert vip.version == 3 and vip.advert_interval_ms == 300 and not vip.preempt
    # A holder that vanishes is replaced within 3 s, with margin for ARP and clients.
    assert vip.takeover_ms(100) < 1200


@pytest.mark.parametrize(("extra", "key", "words"), [
    ("router_id = 300\n", "vip.router_id", "1..255"),
    ("priority = 255\n", "vip.priority", "1..254"),
    ('interface = "eth1 x"\n', "vip.interface", "interface name"),
    ('address = "192.168.8.1"\n', "vip.address", "prefix length"),
    ('peers = ["nope"]\n', "vip.peers", "not an IP address"),
    ('advert_interval = "5ms"\n', "vip.advert_interval", "10ms"),
    ('auth_password_file = "/etc/p"\nadvert_interval = "500ms"\n', "vip.advert_interval",
     "whole seconds"),
    ('manage = "systemd"\n', "vip.manage", "unit, child"),
    ("prio = 1\n", "vip.prio", "unknown key"),
])
def test_bad_vip_names_file_and_key(tmp_path: Path, extra: str, key: str, words: str) -> None:
    text = "\n".join(line for line in VIP.splitlines()
                     if line.split(" ")[0] not in extra.split(" ")[0]) + "\n" + extra
    with pytest.raises(ConfigError) as info:
        load_config(config_dir(tmp_path, text))
    assert info.value.file == "conf.d/20-vip.toml"
    assert info.value.key == key
    assert words in str(info.value)


def test_missing_interface_is_required(tmp_path: Path) -> None:
    text = VIP.replace('interface = "eth1"\n', "")
    with pytest.raises(ConfigError, match="missing") as info:
        load_config(config_dir(tmp_path, text))
    assert info.value.key == "vip.interface"


def test_render_keeps_the_password_out(tmp_path: Path) -> None:
    vip = VipSettings(addresses=("192.168.8.1/24", "fd00::1/64"), interface="eth1",
                      router_id=51, priority=150, auth_password_file="/x",
                      advert_interval_ms=1000)
    text = render(vip, VipPaths(tmp_path))
    assert "auth_pass" not in text
    assert f"include {tmp_path}/keepalived-auth.conf" in text
    assert "vrrp_version 2" in text and "nopreempt" in text
    # One VRRP instance is one family: the IPv6 address rides along as excluded.
    assert "virtual_ipaddress_excluded {\n        fd00::1/64 dev eth1" in text
    assert "track_interface {\n        hk8s-fit" in text
    assert "unicast_peer" not in text  # multicast when there are no peers


def test_advert_text() -> None:
    assert [advert_text(ms) for ms in (500, 1000, 1250, 30)] == ["0.5", "1", "1.25", "0.03"]


def test_password_file_checks(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("s3cret\n")
    bad.write_text("has space")
    assert read_password(str(good)) == "s3cret"
    with pytest.raises(ConfigError, match=r"vip\.auth_password_file"):
        read_password(str(bad))
    with pytest.raises(ConfigError, match="cannot read"):
        read_password(str(tmp_path / "missing"))


def test_fit_reason_and_events_and_digest() -> None:
    assert fit_reason(False, [{"name": "c0", "up": 2}]) == "HAProxy is not running"
    assert fit_reason(True, [{"name": "c0", "up": 0}]) == "no UP node in c0"
    assert fit_reason(True, [{"name": "c0", "up": 1}]) == ""
    assert parse_event('INSTANCE "haproxy_k8s" MASTER 150') == ("haproxy_k8s", "MASTER", 150)
    assert parse_event("GROUP x") is None
    assert config_digest("a /run/x b", "/run/x") == config_digest("a /tmp/y b", "/tmp/y")
    # The log socket is named after the state dir (a hash of it): taken out too.
    x, y = (StatePaths(Path(d)).log_socket for d in ("/run/x", "/tmp/y"))
    assert config_digest(f"log abns@{x}", "/run/x") == config_digest(f"log abns@{y}", "/tmp/y")


def test_keepalived_accepts_what_we_render(tmp_path: Path) -> None:
    binary = require_tool("keepalived", "apt-get install keepalived")
    from haproxy_k8s.errors import ValidationError
    from haproxy_k8s.vip.check import check_keepalived

    # The interface must exist where the check runs: `lo` is refused for VRRP,
    # so a missing interface is the refusal we can count on here.
    vip = VipSettings(addresses=("192.168.8.1/24",), interface="hk8s-nope0", router_id=51,
                      priority=150)
    path = tmp_path / "keepalived.conf"
    path.write_text(render(vip, VipPaths(tmp_path)))
    with pytest.raises(ValidationError, match="keepalived --config-test refused"):
        check_keepalived(binary, path)
    assert os.path.exists(path)


# keepalived 2.2.7's --config-test log in haproxy-k8s.service's sandbox (no AF_NETLINK), as
# seen in the systemd box; the last case adds a real syntax error.
NO_NETLINK = ["Error while registering Kernel netlink cmd channel",
              "netlink_address_lookup() returned -1",
              "(/run/haproxy-k8s/keepalived.conf.candidate: Line 14) WARNING - interface eth-vip "
              "for vrrp_instance haproxy_k8s doesn't exist",
              "(/run/haproxy-k8s/keepalived.conf.candidate: Line 20) WARNING - interface eth-vip "
              "for ip address 10.231.9.1/24 doesn't exist",
              "(/run/haproxy-k8s/keepalived.conf.candidate: Line 26) (haproxy_k8s) tracked "
              "interface hk8s-fit doesn't exist",
              "Non-existent interface specified in configuration"]


@pytest.mark.parametrize(("lines", "deferred"), [
    (NO_NETLINK, True),
    # With netlink, a missing interface is keepalived's verdict, not a blind spot.
    (NO_NETLINK[2:], False),
    (["(/x: Line 3) Unknown keyword 'virtual_router_idd'", *NO_NETLINK], False),
    ([], False),
])
def test_only_blind_interface_verdicts_are_deferred(lines: list[str], deferred: bool) -> None:
    from haproxy_k8s.vip.check import deferred_to_unit

    assert deferred_to_unit(lines) is deferred

"""`haproxy-k8s firewall`: the nftables table that opens exactly the configured listeners.

Every ruleset is checked by the kernel with `nft -c` (a dry run: nothing is loaded); that
needs root, which CI has. Nothing here sends a packet.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from daemonutil import cli
from helpers import require_tool

from haproxy_k8s.cli.firewall import ACCEPT_MARK, TABLE, render_firewall
from haproxy_k8s.config.loader import load_config

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
MARK = f"meta mark set meta mark | 0x{ACCEPT_MARK:08x} accept"


def nft_check(ruleset: str, tmp_path: Path) -> None:
    """`nft -c -f`: the kernel parses and validates the ruleset without applying it."""
    nft = require_tool("nft", "apt-get install nftables")
    if os.geteuid() != 0:
        message = "nft -c needs root (CAP_NET_ADMIN)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: required in CI")
        pytest.skip(message)
    path = tmp_path / "haproxy-k8s.nft"
    path.write_text(ruleset)
    done = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, f"nft -c refused the ruleset: {done.stderr}\n{ruleset}"


def rules(ruleset: str) -> list[str]:
    """The rule lines of the input chain (no comments, no chain header)."""
    body = ruleset.split("policy accept;\n", 1)[1].rsplit("\t}", 1)[0]
    return [line.strip() for line in body.splitlines() if not line.strip().startswith("#")]


def config_dir(tmp_path: Path, text: str) -> Path:
    (tmp_path / "conf.d").mkdir(parents=True)
    (tmp_path / "conf.d" / "10-test.toml").write_text(textwrap.dedent(text))
    return tmp_path


def test_origin_router_opens_6443_to_all_and_8404_to_stats_allow(tmp_path: Path) -> None:
    ruleset = render_firewall(load_config(EXAMPLES))
    assert f"table inet {TABLE} {{" in ruleset
    assert rules(ruleset) == [
        f"ip daddr 192.168.8.1 tcp dport 6443 {MARK}",
        f"ip daddr 192.168.8.1 tcp dport 8404 ip saddr {{ 127.0.0.0/8, 192.168.8.0/24 }} {MARK}",
        "ip daddr 192.168.8.1 tcp dport 8404 drop",
    ]
    nft_check(ruleset, tmp_path)


def test_ipv6_wildcards_several_clusters_and_mixed_allow(tmp_path: Path) -> None:
    directory = config_dir(tmp_path / "config", """\
        [stats]
        bind = "[::]:8404"
        allow = ["10.0.0.0/8", "fd00::/64", "127.0.0.1/32"]
        [clusters.a]
        bind = ["[fd00::1]:6443", "127.0.8.1:6443"]
        [clusters.a.nodes.m1]
        address = "127.0.8.10"
        [clusters.b]
        bind = "*:7443"
        [clusters.b.nodes.m1]
        address = "127.0.8.11"
        """)
    ruleset = render_firewall(load_config(directory))
    assert rules(ruleset) == [
        f"ip daddr 127.0.8.1 tcp dport 6443 {MARK}",
        f"ip6 daddr fd00::1 tcp dport 6443 {MARK}",
        f"meta nfproto ipv4 tcp dport 7443 {MARK}",
        f"tcp dport 8404 ip saddr {{ 10.0.0.0/8, 127.0.0.1/32 }} {MARK}",
        f"tcp dport 8404 ip6 saddr {{ fd00::/64 }} {MARK}",
        "tcp dport 8404 drop",
    ]
    nft_check(ruleset, tmp_path)


def test_ipv6_stats_bind_gets_only_the_ipv6_allow_entries(tmp_path: Path) -> None:
    directory = config_dir(tmp_path / "config", """\
        [stats]
        bind = "[fd00::1]:8404"
        allow = ["127.0.0.0/8", "fd00::/64"]
        [clusters.a]
        bind = "127.0.8.1:6443"
        [clusters.a.nodes.m1]
        address = "127.0.8.10"
        """)
    ruleset = render_firewall(load_config(directory))
    assert rules(ruleset)[1:] == [
        f"ip6 daddr fd00::1 tcp dport 8404 ip6 saddr {{ fd00::/64 }} {MARK}",
        "ip6 daddr fd00::1 tcp dport 8404 drop",
    ]
    nft_check(ruleset, tmp_path)


def test_no_stats_rules_when_stats_is_off_and_metrics_never_opened(tmp_path: Path) -> None:
    directory = config_dir(tmp_path / "config", """\
        [stats]
        bind = ""
        [metrics]
        bind = "127.0.8.1:9404"
        [clusters.a]
        bind = "127.0.8.1:6443"
        [clusters.a.nodes.m1]
        address = "127.0.8.10"
        """)
    ruleset = render_firewall(load_config(directory))
    assert rules(ruleset) == [f"ip daddr 127.0.8.1 tcp dport 6443 {MARK}"]
    assert "9404" not in ruleset
    nft_check(ruleset, tmp_path)


def test_loading_twice_replaces_the_table(tmp_path: Path) -> None:
    """The file creates, deletes and re-creates its table: `nft -f` it again and again."""
    ruleset = render_firewall(load_config(EXAMPLES))
    nft_check(ruleset + ruleset, tmp_path)


def test_cli_prints_the_ruleset_and_fails_on_a_broken_dir(tmp_path: Path) -> None:
    done = cli("firewall", "--config-dir", str(EXAMPLES))
    assert done.returncode == 0, done.stderr
    assert done.stdout == render_firewall(load_config(EXAMPLES))
    broken = config_dir(tmp_path / "broken", """\
        [clusters.a]
        bind = "127.0.8.1:70000"
        """)
    done = cli("firewall", "--config-dir", str(broken))
    assert done.returncode == 1
    assert "clusters.a.bind" in done.stderr and done.stdout == ""

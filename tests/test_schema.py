"""Table-driven tests for `schema.build_config`: raw dicts in, `Config` or `ConfigError` out.

Each bad case states the key the error must name; every key is attributed to FILE,
so each case also checks that the error names the file.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from haproxy_k8s.config.loader import load_config
from haproxy_k8s.config.model import (
    Balance,
    Bind,
    CheckKind,
    ClusterSettings,
    Config,
    HaproxySettings,
)
from haproxy_k8s.config.schema import SECTION_KEYS, build_config, dotted_key
from haproxy_k8s.errors import ConfigError

FILE = "conf.d/50-test.toml"
DELETE = object()  # overlay value that removes the key from the base config


def base() -> dict[str, Any]:
    return {
        "clusters": {
            "c0": {
                "bind": "192.168.8.1:6443",
                "nodes": {"m1": {"address": "192.168.8.10"}},
            }
        }
    }


def overlay(over: dict[str, Any], into: dict[str, Any] | None = None) -> dict[str, Any]:
    """`base()` with `over` merged in deeply (DELETE removes a key)."""
    raw = base() if into is None else into
    for key, value in over.items():
        if value is DELETE:
            raw.pop(key, None)
        elif isinstance(value, dict) and isinstance(raw.get(key), dict):
            overlay(value, raw[key])
        else:
            raw[key] = copy.deepcopy(value)
    return raw


def provenance(raw: Any, file: str = FILE, path: tuple[str, ...] = ()) -> dict[Any, str]:
    prov: dict[Any, str] = {path: file} if path else {}
    if isinstance(raw, dict):
        for key, value in raw.items():
            prov.update(provenance(value, file, (*path, key)))
    return prov


def build(over: dict[str, Any]) -> Config:
    raw = overlay(over)
    return build_config(raw, provenance(raw))


def node(**keys: Any) -> dict[str, Any]:
    return {"clusters": {"c0": {"nodes": {"m1": keys}}}}


def cluster(**keys: Any) -> dict[str, Any]:
    return {"clusters": {"c0": keys}}


def named_cluster(name: str) -> dict[str, Any]:
    return {"clusters": {"c0": DELETE, name: base()["clusters"]["c0"]}}


def named_node(name: str) -> dict[str, Any]:
    return {"clusters": {"c0": {"nodes": {"m1": DELETE, name: {"address": "10.0.0.1"}}}}}


# --- bad input: (id, overlay, key the error names, fragment of the message) ---

N = "clusters.c0.nodes.m1"
INJECT = "m1\n    server evil 6.6.6.6:6443"

BAD: list[tuple[str, dict[str, Any], str, str]] = [
    # unknown keys, everywhere, with a suggestion when one is close
    ("unknown top", {"haproxyy": {}}, "haproxyy", "did you mean 'haproxy'?"),
    ("unknown defaults", {"defaults": {"chek_interval": "2s"}}, "defaults.chek_interval",
     "did you mean 'check_interval'?"),
    ("unknown haproxy", {"haproxy": {"bin": "x"}}, "haproxy.bin", "did you mean 'binary'?"),
    ("unknown stats", {"stats": {"alow": []}}, "stats.alow", "did you mean 'allow'?"),
    ("unknown metrics", {"metrics": {"alow": []}}, "metrics.alow", "unknown key 'alow'"),
    ("unknown watch", {"watch": {"delay": "1s"}}, "watch.delay", "unknown key 'delay'"),
    ("unknown cluster", cluster(balanse="source"), "clusters.c0.balanse",
     "did you mean 'balance'?"),
    ("unknown node", node(adress="10.0.0.1"), f"{N}.adress", "did you mean 'address'?"),
    ("unknown, nothing close", {"defaults": {"zzz": 1}}, "defaults.zzz", "unknown key 'zzz'"),
    ("unknown key with newline", {"defaults": {"a\nb": 1}}, 'defaults."a\\nb"', "unknown key"),
    # tables
    ("section not a table", {"haproxy": 5}, "haproxy", "expected a table, got 5"),
    ("clusters not a table", {"clusters": "c0"}, "clusters", "expected a table"),
    ("cluster not a table", {"clusters": {"c0": 5}}, "clusters.c0", "expected a table"),
    ("node not a table", cluster(nodes={"m1": "10.0.0.1"}), N, "expected a table"),
    # types: ints are ints, bools are bools, strings are strings
    ("int as string", {"defaults": {"fall": "3"}}, "defaults.fall", 'expected an integer, got "3"'),
    ("int as bool", {"defaults": {"fall": True}}, "defaults.fall", "expected an integer, got true"),
    ("int as float", {"defaults": {"rise": 2.0}}, "defaults.rise", "expected an integer, got 2.0"),
    ("fall 0", {"defaults": {"fall": 0}}, "defaults.fall", "0 is out of range (expected 1..1000)"),
    ("rise 1001", {"defaults": {"rise": 1001}}, "defaults.rise", "out of range"),
    ("retries -1", {"defaults": {"retries": -1}}, "defaults.retries", "expected 0..100"),
    ("retries 101", {"defaults": {"retries": 101}}, "defaults.retries", "expected 0..100"),
    ("bool as yes", {"defaults": {"redispatch": "yes"}}, "defaults.redispatch",
     'expected true or false, got "yes"'),
    ("bool as int", cluster(tcpka=1), "clusters.c0.tcpka", "expected true or false, got 1"),
    ("string as int", {"haproxy": {"user": 5}}, "haproxy.user", "expected a string, got 5"),
    ("maxconn -1", {"haproxy": {"maxconn": -1}}, "haproxy.maxconn", "out of range"),
    ("max reloads 0", {"haproxy": {"mworker_max_reloads": 0}}, "haproxy.mworker_max_reloads",
     "out of range"),
    ("server_state string", {"haproxy": {"server_state": "on"}}, "haproxy.server_state",
     "expected true or false"),
    # choices
    ("balance unknown", {"defaults": {"balance": "random"}}, "defaults.balance",
     "expected one of roundrobin, leastconn, source"),
    ("balance typo", {"defaults": {"balance": "leastcon"}}, "defaults.balance",
     "did you mean 'leastconn'?"),
    ("check unknown", cluster(check="http"), "clusters.c0.check",
     "expected one of tcp, tls, https"),
    # durations
    ("duration bare int", {"defaults": {"check_interval": 2}}, "defaults.check_interval",
     "write '2s'"),
    ("duration no unit", {"defaults": {"check_interval": "2"}}, "defaults.check_interval",
     "is not a duration"),
    ("duration space", {"defaults": {"check_interval": "2 s"}}, "defaults.check_interval",
     "is not a duration"),
    ("duration upper", {"defaults": {"check_interval": "2S"}}, "defaults.check_interval",
     "is not a duration"),
    ("duration fraction", {"defaults": {"check_interval": "1.5s"}}, "defaults.check_interval",
     "is not a duration"),
    ("duration negative", {"defaults": {"check_interval": "-1s"}}, "defaults.check_interval",
     "is not a duration"),
    ("duration word unit", {"defaults": {"check_interval": "2sec"}}, "defaults.check_interval",
     "is not a duration"),
    ("duration fullwidth digit", {"defaults": {"check_interval": "\uff12s"}},
     "defaults.check_interval", "is not a duration"),
    ("duration us", {"defaults": {"check_interval": "500us"}}, "defaults.check_interval",
     "is not a duration"),
    ("duration empty", {"defaults": {"check_interval": ""}}, "defaults.check_interval",
     "is not a duration"),
    ("duration float", {"defaults": {"check_interval": 2.5}}, "defaults.check_interval",
     "expected a duration such as '2s'"),
    ("duration zero", {"defaults": {"connect_timeout": "0s"}}, "defaults.connect_timeout",
     "must be longer than 0"),
    ("duration too long", cluster(client_timeout="25d"), "clusters.c0.client_timeout",
     "limit of 24d"),
    ("hard_stop_after zero", {"haproxy": {"hard_stop_after": "0m"}}, "haproxy.hard_stop_after",
     "longer than 0"),
    ("debounce zero", {"watch": {"debounce": "0ms"}}, "watch.debounce", "longer than 0"),
    ("max_wait < debounce", {"watch": {"debounce": "5s", "max_wait": "1s"}}, "watch.max_wait",
     "must not be shorter than debounce"),
    ("debounce > default max_wait", {"watch": {"debounce": "5s"}}, "watch.debounce",
     "must not be shorter than debounce"),
    # paths (written into haproxy.cfg)
    ("ca_file relative", {"defaults": {"ca_file": "pki/ca.crt"}}, "defaults.ca_file",
     "expected an absolute path"),
    ("ca_file space", {"defaults": {"ca_file": "/etc/ca file.crt"}}, "defaults.ca_file",
     "is not a safe path"),
    ("ca_file injection", cluster(ca_file="/ca.crt\n    server evil 6.6.6.6:1"),
     "clusters.c0.ca_file", "is not a safe path"),
    ("client_cert hash", cluster(client_cert="/etc/x#y.pem"), "clusters.c0.client_cert",
     "is not a safe path"),
    ("client_cert quote", cluster(client_cert='/etc/x".pem'), "clusters.c0.client_cert",
     "is not a safe path"),
    ("state_dir relative", {"haproxy": {"state_dir": "run/x"}}, "haproxy.state_dir",
     "absolute path"),
    ("state_dir too long", {"haproxy": {"state_dir": "/" + "x" * 90}}, "haproxy.state_dir",
     "108-byte limit"),
    ("binary relative path", {"haproxy": {"binary": "./haproxy"}}, "haproxy.binary",
     "absolute path"),
    ("binary with args", {"haproxy": {"binary": "haproxy -f /x"}}, "haproxy.binary",
     "not a safe program name"),
    ("binary option", {"haproxy": {"binary": "-haproxy"}}, "haproxy.binary", "not a safe"),
    ("password_file relative", {"stats": {"user": "admin", "password_file": "pw"}},
     "stats.password_file", "absolute path"),
    # check_path (written into an http-check line)
    ("check_path no slash", {"defaults": {"check_path": "readyz"}}, "defaults.check_path",
     "not a safe URI path"),
    ("check_path space", {"defaults": {"check_path": "/ready z"}}, "defaults.check_path",
     "not a safe URI path"),
    ("check_path newline", {"defaults": {"check_path": "/readyz\nhttp-check expect status 500"}},
     "defaults.check_path", "not a safe URI path"),
    ("check_path hash", cluster(check_path="/a#b"), "clusters.c0.check_path", "not a safe URI"),
    ("check_path dquote", cluster(check_path='/a"b'), "clusters.c0.check_path", "not a safe URI"),
    ("check_path squote", cluster(check_path="/a'b"), "clusters.c0.check_path", "not a safe URI"),
    ("check_path backslash", cluster(check_path="/a\\b"), "clusters.c0.check_path",
     "not a safe URI"),
    ("check_path bad escape", cluster(check_path="/a%zz"), "clusters.c0.check_path",
     "not a safe URI"),
    ("check_path dollar", cluster(check_path="/${HOME}"), "clusters.c0.check_path",
     "not a safe URI"),
    ("check_path control", cluster(check_path="/a\x01"), "clusters.c0.check_path",
     "not a safe URI"),
    # unix names
    ("user with space", {"haproxy": {"user": "ha proxy"}}, "haproxy.user", "not a user or group"),
    ("group newline", {"haproxy": {"group": "haproxy\n"}}, "haproxy.group", "not a user or group"),
    ("user uppercase", {"haproxy": {"user": "HAProxy"}}, "haproxy.user", "not a user or group"),
    ("stats user colon", {"stats": {"user": "a:b", "password_file": "/pw"}}, "stats.user",
     "not a user or group"),
    # cluster and node names (they become HAProxy section and server names)
    ("cluster uppercase", named_cluster("C0"), "clusters.C0", "cluster name"),
    ("cluster space", named_cluster("c 0"), 'clusters."c 0"', "cluster name"),
    ("cluster newline", named_cluster("c0\nbackend x"), 'clusters."c0\\nbackend x"',
     "cluster name"),
    ("cluster hash", named_cluster("c#0"), 'clusters."c#0"', "cluster name"),
    ("cluster slash", named_cluster("c/0"), 'clusters."c/0"', "cluster name"),
    ("cluster dot", named_cluster("c.0"), 'clusters."c.0"', "cluster name"),
    ("cluster leading dash", named_cluster("-c0"), "clusters.-c0", "cluster name"),
    ("cluster trailing dash", named_cluster("c0-"), "clusters.c0-", "cluster name"),
    ("cluster empty", named_cluster(""), 'clusters.""', "cluster name"),
    ("cluster 64 chars", named_cluster("c" * 64), "clusters." + "c" * 64, "cluster name"),
    ("cluster underscore", named_cluster("c_0"), "clusters.c_0", "cluster name"),
    ("node uppercase", named_node("M1"), "clusters.c0.nodes.M1", "node name"),
    ("node space", named_node("m 1"), 'clusters.c0.nodes."m 1"', "node name"),
    ("node injection", named_node(INJECT), f"clusters.c0.nodes.{dotted_key([INJECT])}",
     "node name"),
    ("node hash", named_node("m#1"), 'clusters.c0.nodes."m#1"', "node name"),
    ("node slash", named_node("m/1"), 'clusters.c0.nodes."m/1"', "node name"),
    ("node double dot", named_node("m..1"), 'clusters.c0.nodes."m..1"', "node name"),
    ("node leading dot", named_node(".m1"), 'clusters.c0.nodes.".m1"', "node name"),
    ("node label 64", named_node("m" * 64 + ".x"), 'clusters.c0.nodes."' + "m" * 64 + '.x"',
     "node name"),
    ("node over 253", named_node(".".join(["a" * 63] * 4)),
     dotted_key(["clusters", "c0", "nodes", ".".join(["a" * 63] * 4)]), "node name"),
    # node addresses (they become `server` line arguments)
    ("address trailing option", node(address="10.0.0.1 backup"), f"{N}.address",
     "not an IP address or a DNS name"),
    ("address newline", node(address="10.0.0.1\nserver evil 6.6.6.6:1"), f"{N}.address",
     "not an IP address"),
    ("address hash", node(address="10.0.0.1#"), f"{N}.address", "not an IP address"),
    ("address space in name", node(address="api server"), f"{N}.address", "not an IP address"),
    ("address bad octet", node(address="256.1.1.1"), f"{N}.address", "not an IP address"),
    ("address short v4", node(address="10.0.0"), f"{N}.address", "not an IP address"),
    ("address zone id", node(address="fe80::1%eth0 backup"), f"{N}.address", "not an IP address"),
    ("address brackets", node(address="[::1]"), f"{N}.address", "not an IP address"),
    ("address underscore", node(address="api_1.example.com"), f"{N}.address", "not an IP"),
    ("address with port", node(address="10.0.0.1:6443"), f"{N}.address", "not an IP address"),
    ("address empty", node(address=""), f"{N}.address", "not an IP address"),
    ("address int", node(address=10), f"{N}.address", "expected a string, got 10"),
    ("address missing", node(address=DELETE, port=6443), f"{N}.address", "missing (required)"),
    # ports, weights, flags
    ("port 0", node(port=0), f"{N}.port", "0 is not a port (expected 1..65535)"),
    ("port 65536", node(port=65536), f"{N}.port", "65536 is not a port"),
    ("port 70000", node(port=70000), f"{N}.port", "70000 is not a port"),
    ("port negative", node(port=-1), f"{N}.port", "is not a port"),
    ("port string", node(port="6443"), f"{N}.port", 'expected an integer, got "6443"'),
    ("port float", node(port=6443.0), f"{N}.port", "expected an integer"),
    ("weight 257", node(weight=257), f"{N}.weight", "expected 0..256"),
    ("weight -1", node(weight=-1), f"{N}.weight", "expected 0..256"),
    ("backup no", node(backup="no"), f"{N}.backup", "expected true or false"),
    ("enabled string", node(enabled="false"), f"{N}.enabled", "expected true or false"),
    # binds
    ("bind missing", cluster(bind=DELETE), "clusters.c0.bind", "missing (required)"),
    ("bind empty list", cluster(bind=[]), "clusters.c0.bind", "non-empty list"),
    ("bind int", cluster(bind=6443), "clusters.c0.bind", "expected an address:port string"),
    ("bind port only", cluster(bind="6443"), "clusters.c0.bind", "is not address:port"),
    ("bind no port", cluster(bind="10.0.0.1"), "clusters.c0.bind", "is not address:port"),
    ("bind port 0", cluster(bind="10.0.0.1:0"), "clusters.c0.bind", "is not a port"),
    ("bind port 65536", cluster(bind="10.0.0.1:65536"), "clusters.c0.bind", "is not a port"),
    ("bind port name", cluster(bind="10.0.0.1:https"), "clusters.c0.bind", "is not a port"),
    ("bind port sign", cluster(bind="10.0.0.1:+443"), "clusters.c0.bind", "is not a port"),
    ("bind injection", cluster(bind="10.0.0.1:6443 ssl crt /tmp/x"), "clusters.c0.bind",
     "is not a port"),
    ("bind v6 no brackets", cluster(bind="::1:6443"), "clusters.c0.bind", "needs brackets"),
    ("bind v4 in brackets", cluster(bind="[10.0.0.1]:6443"), "clusters.c0.bind",
     "must be an IP literal"),
    ("bind zone id", cluster(bind="[fe80::1%eth0]:6443"), "clusters.c0.bind", "IP literal"),
    ("bind hostname", cluster(bind="lb.example.com:6443"), "clusters.c0.bind", "IP literal"),
    ("bind list item type", cluster(bind=["10.0.0.1:6443", 5]), "clusters.c0.bind",
     "expected a string, got 5"),
    ("stats bind bad", {"stats": {"bind": "localhost:8404"}}, "stats.bind", "IP literal"),
    ("metrics bind bad", {"metrics": {"bind": "127.0.0.1:0"}}, "metrics.bind", "not a port"),
    # bind conflicts, naming both places
    ("bind twice in a cluster", cluster(bind=["10.0.0.1:6443", "10.0.0.1:6443"]),
     "clusters.c0.bind", "in the same list"),
    ("wildcard in a cluster", cluster(bind=["*:6443", "10.0.0.1:6443"]), "clusters.c0.bind",
     "in the same list"),
    ("duplicate bind across clusters",
     {"clusters": {"c1": {"bind": "192.168.8.1:6443", "nodes": {"m1": {"address": "h1"}}}}},
     "clusters.c1.bind", f"conflicts with 192.168.8.1:6443 of clusters.c0.bind ({FILE})"),
    ("wildcard across clusters",
     {"clusters": {"c1": {"bind": ":6443", "nodes": {"m1": {"address": "h1"}}}}},
     "clusters.c1.bind", "0.0.0.0:6443 conflicts with 192.168.8.1:6443 of clusters.c0.bind"),
    ("cluster vs default stats", cluster(bind="127.0.0.1:8404"), "clusters.c0.bind",
     "conflicts with 127.0.0.1:8404 of stats.bind (the default)"),
    ("default stats bind in a [stats] table",
     {"stats": {"allow": ["10.0.0.0/8"]}, "clusters": {"c0": {"bind": "*:8404"}}},
     "clusters.c0.bind", "conflicts with 127.0.0.1:8404 of stats.bind (the default)"),
    ("cluster vs metrics", {"metrics": {"bind": "[::]:6443"}}, "clusters.c0.bind",
     "of metrics.bind"),
    ("stats vs metrics", {"stats": {"bind": "127.0.0.1:9404"}}, "stats.bind",
     "of metrics.bind (the default)"),
    # stats
    ("allow not a list", {"stats": {"allow": "127.0.0.0/8"}}, "stats.allow",
     "expected a list of CIDRs"),
    ("allow empty", {"stats": {"allow": []}}, "stats.allow", "locks everyone out"),
    ("allow junk", {"stats": {"allow": ["localhost"]}}, "stats.allow", "is not a CIDR"),
    ("allow prefix 33", {"stats": {"allow": ["10.0.0.0/33"]}}, "stats.allow", "is not a CIDR"),
    ("allow zone", {"stats": {"allow": ["fe80::%eth0/64"]}}, "stats.allow", "is not a CIDR"),
    ("allow item type", {"stats": {"allow": [5]}}, "stats.allow", "expected a string"),
    ("user without password", {"stats": {"user": "admin"}}, "stats.user",
     "needs password_file"),
    ("password without user", {"stats": {"password_file": "/etc/pw"}}, "stats.password_file",
     "needs user"),
    # nodes and clusters
    ("cluster without nodes", cluster(nodes=DELETE), "clusters.c0", "cluster has no nodes"),
    ("cluster with zero nodes", cluster(nodes={"m1": DELETE}), "clusters.c0.nodes", "has no nodes"),
    ("every node disabled", node(enabled=False), "clusters.c0.nodes", "has every node disabled"),
    ("disabled node still checked", node(enabled=False, port=0), f"{N}.port", "is not a port"),
    ("no clusters", {"clusters": {"c0": DELETE}}, "clusters", "no clusters configured"),
]


@pytest.mark.parametrize(("over", "key", "fragment"), [case[1:] for case in BAD],
                         ids=[case[0] for case in BAD])
def test_bad_input_names_file_and_key(over: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(over)
    err = info.value
    assert (err.file, err.key) == (FILE, key)
    assert fragment in err.message
    assert str(err).startswith(f"{FILE}: {key}: ")
    # Names, keys and values are escaped in messages: one log line, nothing injected.
    assert "\n" not in str(err)


def test_error_message_format_from_the_brief() -> None:
    raw = overlay(node(port=70000))
    prov = provenance(raw, "conf.d/10-cluster.toml")
    prov[("clusters", "c0", "nodes", "m1", "port")] = "conf.d/20-m4.toml"
    with pytest.raises(ConfigError, match=r"^conf\.d/20-m4\.toml: clusters\.c0\.nodes\.m1\.port: "
                       r"70000 is not a port"):
        build_config(raw, prov)


def test_missing_key_names_the_file_that_defined_the_table() -> None:
    raw = overlay(node(address=DELETE, port=6443))
    prov = provenance(raw, "conf.d/10-cluster.toml")
    prov[("clusters", "c0", "nodes", "m1")] = "conf.d/20-m1.toml"
    with pytest.raises(ConfigError) as info:
        build_config(raw, prov)
    assert info.value.file == "conf.d/20-m1.toml"


def test_no_clusters_at_all_points_at_conf_d() -> None:
    with pytest.raises(ConfigError) as info:
        build_config({}, {})
    assert (info.value.file, info.value.key) == ("conf.d/", "clusters")


# --- good input ------------------------------------------------------------------


def test_minimal_config_gets_the_defaults() -> None:
    config = build({})
    assert config.haproxy == HaproxySettings()
    assert config.defaults == ClusterSettings()
    (c0,) = config.clusters
    assert (c0.name, c0.binds, c0.settings) == ("c0", (Bind("192.168.8.1", 6443),),
                                                 ClusterSettings())
    assert [(n.name, n.address, n.port, n.weight, n.backup, n.enabled) for n in c0.nodes] == [
        ("m1", "192.168.8.10", 6443, 100, False, True)]


def test_cluster_overrides_defaults_which_override_builtins() -> None:
    config = build({
        "defaults": {"check_interval": "5s", "fall": 5, "balance": "roundrobin"},
        "clusters": {"c0": {"fall": 7, "check": "tcp"}},
    })
    assert config.defaults == dataclasses.replace(
        ClusterSettings(), check_interval_ms=5000, fall=5, balance=Balance.ROUNDROBIN)
    assert config.clusters[0].settings == dataclasses.replace(
        config.defaults, fall=7, check=CheckKind.TCP)


def test_clusters_and_nodes_are_sorted_and_disabled_nodes_dropped() -> None:
    nodes = {"m3": {"address": "10.0.0.3"}, "m1": {"address": "10.0.0.1"},
             "m2": {"address": "10.0.0.2", "enabled": False}, "m0": {"enabled": False}}
    config = build({"clusters": {
        "c0": {"nodes": nodes},
        "b": {"bind": "192.168.8.2:6443", "nodes": {"x.y": {"address": "10.1.0.1"}}},
    }})
    assert [c.name for c in config.clusters] == ["b", "c0"]
    # m0 has no address: a node that is only disabled needs none.
    assert [n.name for n in config.clusters[1].nodes] == ["m1", "m3"]


@pytest.mark.parametrize(("text", "ms"), [
    ("1ms", 1), ("500ms", 500), ("2s", 2000), ("1m", 60_000), ("1h", 3_600_000),
    ("1d", 86_400_000), ("24d", 24 * 86_400_000),
])
def test_durations(text: str, ms: int) -> None:
    assert build({"defaults": {"check_interval": text}}).defaults.check_interval_ms == ms


@pytest.mark.parametrize("key", ["slowstart", "drain_grace"])
def test_zero_allowed_where_it_means_off(key: str) -> None:
    settings = build({"defaults": {key: "0s"}}).defaults
    assert getattr(settings, f"{key}_ms") == 0


@pytest.mark.parametrize(("text", "bind"), [
    ("10.0.0.1:6443", Bind("10.0.0.1", 6443)),
    ("*:6443", Bind("0.0.0.0", 6443)),
    (":6443", Bind("0.0.0.0", 6443)),
    ("[::1]:6443", Bind("::1", 6443)),
    ("[::]:443", Bind("::", 443)),
    ("[2001:DB8:0:0::1]:1", Bind("2001:db8::1", 1)),
    ("10.0.0.1:65535", Bind("10.0.0.1", 65535)),
])
def test_binds(text: str, bind: Bind) -> None:
    assert build(cluster(bind=text)).clusters[0].binds == (bind,)
    assert build(cluster(bind=[text])).clusters[0].binds == (bind,)


def test_several_binds_keep_their_order() -> None:
    binds = build(cluster(bind=["10.0.0.2:6443", "10.0.0.1:6443"])).clusters[0].binds
    assert [str(b) for b in binds] == ["10.0.0.2:6443", "10.0.0.1:6443"]


def test_binds_that_do_not_conflict() -> None:
    config = build({
        "clusters": {"c1": {"bind": ["192.168.8.2:6443", "192.168.8.1:6444"],
                            "nodes": {"m1": {"address": "10.0.0.1"}}}},
        "stats": {"bind": "127.0.0.1:6443"},
    })
    assert len(config.clusters) == 2


@pytest.mark.parametrize(("text", "address"), [
    ("10.0.0.1", "10.0.0.1"),
    ("::1", "::1"),
    ("2001:db8:0:0::1", "2001:db8::1"),
    ("localhost", "localhost"),
    ("API-1.Example.COM", "api-1.example.com"),
    ("k8s-master-1.cluster.local", "k8s-master-1.cluster.local"),
])
def test_node_addresses(text: str, address: str) -> None:
    assert build(node(address=text)).clusters[0].nodes[0].address == address


@pytest.mark.parametrize("name", ["m1", "k8s-master-1", "m1.dc1.example", "0", "a" * 63])
def test_node_names(name: str) -> None:
    assert build(named_node(name)).clusters[0].nodes[0].name == name


@pytest.mark.parametrize("name", ["c0", "0", "cluster-0", "a" * 63])
def test_cluster_names(name: str) -> None:
    assert build(named_cluster(name)).clusters[0].name == name


def test_node_fields() -> None:
    n = build(node(port=1, weight=0, backup=True, enabled=True)).clusters[0].nodes[0]
    assert (n.port, n.weight, n.backup, n.enabled) == (1, 0, True, True)
    assert build(node(weight=256)).clusters[0].nodes[0].weight == 256


def test_haproxy_section() -> None:
    config = build({"haproxy": {
        "binary": "/usr/sbin/haproxy", "state_dir": "/run/hk", "user": "", "group": "",
        "hard_stop_after": "1h", "mworker_max_reloads": 5, "maxconn": 100,
        "server_state": False,
    }})
    assert config.haproxy == HaproxySettings("/usr/sbin/haproxy", "/run/hk", "", "", 3_600_000,
                                             5, 100, False)


def test_optional_paths_accept_empty_and_null() -> None:
    assert build({"defaults": {"ca_file": "", "client_cert": None}}).defaults.ca_file is None
    settings = build(cluster(ca_file="/etc/kubernetes/pki/ca.crt",
                             client_cert="/etc/haproxy-k8s/client.pem")).clusters[0].settings
    assert (settings.ca_file, settings.client_cert) == (
        "/etc/kubernetes/pki/ca.crt", "/etc/haproxy-k8s/client.pem")


@pytest.mark.parametrize("path", ["/readyz", "/livez?verbose", "/a%20b", "/healthz/etcd"])
def test_check_paths(path: str) -> None:
    assert build({"defaults": {"check_path": path}}).defaults.check_path == path


def test_stats_and_metrics() -> None:
    config = build({
        "stats": {"bind": "", "allow": ["10.1.2.3/8", "::1"], "user": "admin",
                  "password_file": "/etc/haproxy-k8s/stats.pw"},
        "metrics": {"bind": ""},
    })
    assert config.stats.bind is None and config.metrics.bind is None
    assert config.stats.allow == ("10.0.0.0/8", "::1/128")
    assert (config.stats.user, config.stats.password_file) == ("admin",
                                                               "/etc/haproxy-k8s/stats.pw")
    assert build({"stats": {"user": ""}}).stats.user is None


def test_watch() -> None:
    watch = build({"watch": {"debounce": "1s", "max_wait": "1s"}}).watch
    assert (watch.debounce_ms, watch.max_wait_ms) == (1000, 1000)


# --- the key tables cover the model ------------------------------------------------


def test_every_cluster_setting_has_a_key() -> None:
    # A field added to ClusterSettings without a key here would be unreachable from config.
    fields = {f.name for f in dataclasses.fields(ClusterSettings)}
    keys = SECTION_KEYS["defaults"]
    assert {k if f"{k}_ms" not in fields else f"{k}_ms" for k in keys} == fields


def test_every_haproxy_setting_has_a_key() -> None:
    fields = {f.name for f in dataclasses.fields(HaproxySettings)}
    keys = SECTION_KEYS["haproxy"]
    assert {k if f"{k}_ms" not in fields else f"{k}_ms" for k in keys} == fields


def test_cluster_tables_take_every_defaults_key() -> None:
    assert SECTION_KEYS["defaults"] | {"bind", "nodes", "discovery", "sni", "sni_default"} \
        == SECTION_KEYS["cluster"]


@pytest.mark.parametrize(("path", "text"), [
    (("clusters", "c0", "nodes"), "clusters.c0.nodes"),
    (("clusters", "a b"), 'clusters."a b"'),
    (("x.y",), '"x.y"'),
    (("a\nb",), '"a\\nb"'),
    (("",), '""'),
])
def test_dotted_key(path: tuple[str, ...], text: str) -> None:
    assert dotted_key(path) == text


def test_shutdown_sessions_needs_error_limit_zero(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "10.toml").write_text(
        '[defaults]\nshutdown_sessions_on_down = true\n'
        '[clusters.c0]\nbind = "127.0.8.1:6443"\n'
        '[clusters.c0.nodes.m1]\naddress = "127.0.8.10"\n')
    with pytest.raises(ConfigError, match="needs error_limit = 0"):
        load_config(tmp_path)
    (conf_d / "20.toml").write_text("[defaults]\nerror_limit = 0\n")
    settings = load_config(tmp_path).clusters[0].settings
    assert settings.shutdown_sessions_on_down and settings.error_limit == 0


def test_equal_settings_are_the_last_loads_object() -> None:
    """[defaults] is parsed anew on every load; a cluster rebuilt for a node edit
    keeps the object of the last load, with or without settings of its own
    (the renderer keeps option texts per settings object)."""
    two = {"clusters": {"c1": {"bind": "192.168.8.1:6444", "fall": 5,
                               "nodes": {"m1": {"address": "192.168.8.20"}}}},
           "defaults": {"rise": 3}}
    first = build(two)
    edited = overlay({"clusters": {"c0": {"nodes": {"m2": {"address": "192.168.8.11"}}},
                                   "c1": {"nodes": {"m2": {"address": "192.168.8.21"}}}}},
                     overlay(two))
    second = build_config(edited, provenance(edited))
    pairs = zip(second.clusters, first.clusters, strict=True)
    assert [c.nodes != o.nodes for c, o in pairs] == [True, True]
    assert second.defaults is first.defaults
    assert second.clusters[0].settings is first.clusters[0].settings is first.defaults
    assert second.clusters[1].settings is first.clusters[1].settings
    changed = build(overlay({"defaults": {"rise": 4}}, overlay(two)))
    assert changed.defaults.rise == 4 and changed.clusters[1].settings.rise == 4

"""The loader: which files are read, in what order, how they merge, and how each
kind of broken file is reported (always a ConfigError naming the file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from haproxy_k8s.config import loader, schema, statedir
from haproxy_k8s.config.loader import config_files, load_config, load_raw
from haproxy_k8s.config.memo import ClusterMemo
from haproxy_k8s.config.model import DEFAULT_STATE_DIR, Bind
from haproxy_k8s.config.statedir import is_ignored
from haproxy_k8s.errors import ConfigError

# The example from DESIGN.md section 1, verbatim: the contract must load.
CONTRACT_EXAMPLE = """
[haproxy]
binary = "haproxy"                 # name on PATH or a path
state_dir = "/run/haproxy-k8s"     # haproxy.cfg, sockets, pid file, status.json, server state
user = "haproxy"                   # privileges HAProxy drops to when started as root
group = "haproxy"

[defaults]                         # every cluster inherits these; a cluster may override them
balance = "leastconn"              # roundrobin | leastconn | source
check = "https"                    # tcp | tls | https (GET check_path, expect 200)
check_path = "/readyz"
check_interval = "2s"
fall = 3
rise = 2
connect_timeout = "10s"
retries = 3

[stats]
bind = "127.0.0.1:8404"            # HAProxy stats page at /stats, Prometheus at /metrics
allow = ["127.0.0.0/8"]            # CIDRs allowed to read it

[metrics]
bind = "127.0.0.1:9404"            # the daemon's own Prometheus metrics

[watch]
debounce = "200ms"                 # quiet time after the last change before applying

[clusters.cluster-0]
bind = ["192.168.8.1:6443"]        # one or more address:port ([v6]:port for IPv6)

[clusters.cluster-0.nodes.k8s-master-1]
address = "192.168.8.10"           # IP literal or DNS name
port = 6443
# weight = 100, backup = false, enabled = true
"""

CLUSTER = """
[clusters.c0]
bind = "127.0.8.1:6443"
[clusters.c0.nodes.m1]
address = "127.0.8.11"
[clusters.c0.nodes.m2]
address = "127.0.8.12"
"""


def write(config_dir: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = config_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return config_dir


def load_error(config_dir: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(config_dir)
    return info.value


# --- which files, in which order -------------------------------------------------


def test_contract_example_loads(tmp_path: Path) -> None:
    write(tmp_path, {"haproxy-k8s.toml": CONTRACT_EXAMPLE})
    config = load_config(tmp_path)
    (cluster,) = config.clusters
    assert cluster.binds == (Bind("192.168.8.1", 6443),)
    assert [(n.name, n.address, n.port) for n in cluster.nodes] == [
        ("k8s-master-1", "192.168.8.10", 6443)]


def test_main_file_first_then_dropins_in_lexical_order(tmp_path: Path) -> None:
    write(tmp_path, {
        "haproxy-k8s.toml": "",
        "conf.d/20-b.toml": "", "conf.d/10-a.json": "{}", "conf.d/15-c.toml": "",
        "conf.d/9-z.toml": "",  # lexical, not numeric: "9" sorts after "2"
    })
    assert [p.relative_to(tmp_path).as_posix() for p in config_files(tmp_path)] == [
        "haproxy-k8s.toml", "conf.d/10-a.json", "conf.d/15-c.toml", "conf.d/20-b.toml",
        "conf.d/9-z.toml"]


def test_main_file_and_conf_d_are_optional(tmp_path: Path) -> None:
    assert config_files(tmp_path) == []
    assert load_raw(tmp_path) == ({}, {})


LEFTOVERS = [".10-hidden.toml", "10-a.toml~", ".#10-a.toml", "10-a.toml.swp", ".10-a.toml.swp",
             "10-a.toml.tmp", "10-a.toml.dpkg-new", "10-a.toml.dpkg-old", "10-a.toml.rpmnew",
             "10-a.toml.rpmsave", "#10-a.toml#", "4913", "README", "x.yaml", "x.toml.bak",
             "x.TOML", "x.dpkg-dist.toml"]


@pytest.mark.parametrize("name", LEFTOVERS)
def test_is_ignored(name: str) -> None:
    assert is_ignored(name)


@pytest.mark.parametrize("name", ["10-a.toml", "20-b.json", "haproxy-k8s.toml", "a.b.toml"])
def test_is_not_ignored(name: str) -> None:
    assert not is_ignored(name)


def test_editor_leftovers_and_directories_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, {"conf.d/10-c0.toml": CLUSTER})
    write(tmp_path, {f"conf.d/{name}": b"\0garbage [[[" for name in LEFTOVERS})
    (tmp_path / "conf.d" / "sub.toml").mkdir()
    (tmp_path / "conf.d" / "link.toml").symlink_to(tmp_path / "conf.d" / "sub.toml")
    assert [p.name for p in config_files(tmp_path)] == ["10-c0.toml"]
    assert load_config(tmp_path).clusters[0].name == "c0"


# --- merging ----------------------------------------------------------------------


def test_later_scalar_wins_and_provenance_names_it(tmp_path: Path) -> None:
    write(tmp_path, {
        "haproxy-k8s.toml": '[defaults]\nfall = 5\ncheck_interval = "9s"\n',
        "conf.d/10-a.toml": CLUSTER + '[defaults]\ncheck_interval = "1s"\n',
        "conf.d/20-b.json": '{"defaults": {"check_interval": "3s"}}',
    })
    raw, prov = load_raw(tmp_path)
    assert raw["defaults"] == {"fall": 5, "check_interval": "3s"}
    assert prov[("defaults", "check_interval")] == "conf.d/20-b.json"
    assert prov[("defaults", "fall")] == "haproxy-k8s.toml"
    # A table is attributed to the last file that set anything in it.
    assert prov[("defaults",)] == "conf.d/20-b.json"
    assert prov[("clusters", "c0", "nodes", "m1")] == "conf.d/10-a.toml"
    config = load_config(tmp_path)
    assert (config.defaults.check_interval_ms, config.defaults.fall) == (3000, 5)


def test_later_list_replaces_earlier_list(tmp_path: Path) -> None:
    write(tmp_path, {
        "conf.d/10-a.toml": CLUSTER.replace('"127.0.8.1:6443"',
                                            '["127.0.8.1:6443", "127.0.8.2:6443"]'),
        "conf.d/20-b.toml": '[clusters.c0]\nbind = ["192.168.8.3:6443"]\n',
    })
    assert load_config(tmp_path).clusters[0].binds == (Bind("192.168.8.3", 6443),)


def test_node_added_by_a_later_dropin(tmp_path: Path) -> None:
    write(tmp_path, {
        "conf.d/10-cluster.toml": CLUSTER,
        "conf.d/20-node-4.toml": '[clusters.c0.nodes.m4]\naddress = "127.0.8.14"\nweight = 50\n',
    })
    nodes = load_config(tmp_path).clusters[0].nodes
    assert [(n.name, n.weight) for n in nodes] == [("m1", 100), ("m2", 100), ("m4", 50)]


def test_node_disabled_by_a_later_dropin(tmp_path: Path) -> None:
    write(tmp_path, {
        "conf.d/10-cluster.toml": CLUSTER,
        "conf.d/20-drain-m2.toml": "[clusters.c0.nodes.m2]\nenabled = false\n",
    })
    assert [n.name for n in load_config(tmp_path).clusters[0].nodes] == ["m1"]


def test_disabling_a_node_whose_file_is_gone_is_fine(tmp_path: Path) -> None:
    write(tmp_path, {
        "conf.d/10-cluster.toml": CLUSTER,
        "conf.d/30-off.toml": "[clusters.c0.nodes.m9]\nenabled = false\n",
    })
    assert [n.name for n in load_config(tmp_path).clusters[0].nodes] == ["m1", "m2"]


def test_a_changed_default_keeps_each_clusters_nodes_and_moves_its_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c1 = CLUSTER.replace("c0", "c1").replace(
        'bind = "127.0.8.1:6443"', 'bind = "127.0.8.1:6444"\nconnect_timeout = "3s"')
    write(tmp_path, {"conf.d/10-c0.toml": CLUSTER, "conf.d/11-c1.toml": c1})
    before = load_config(tmp_path)
    write(tmp_path, {"conf.d/20-defaults.toml": '[defaults]\nconnect_timeout = "7s"\nfall = 5\n'})
    after = load_config(tmp_path)
    for name, connect_ms in (("c0", 7000), ("c1", 3000)):
        old, new = before.cluster(name), after.cluster(name)
        assert old is not None and new is not None
        assert new.nodes is old.nodes and new.binds is old.binds  # kept, not parsed again
        assert (new.settings.connect_timeout_ms, new.settings.fall) == (connect_ms, 5)
    # Exactly what a load from scratch makes.
    monkeypatch.setattr(schema, "CLUSTERS", ClusterMemo())
    assert load_config(tmp_path) == after


def test_order_is_by_file_name_not_by_format(tmp_path: Path) -> None:
    write(tmp_path, {
        "conf.d/10-c0.toml": CLUSTER,
        "conf.d/20-a.json": '{"defaults": {"fall": 4}}',
        "conf.d/30-b.toml": "[defaults]\nfall = 6\n",
        "conf.d/40-c.json": '{"defaults": {"fall": 8}}',
    })
    assert load_config(tmp_path).defaults.fall == 8


# --- broken files: (id, files, file named, key named or None, message fragment) -----

BAD_FILES: list[tuple[str, dict[str, Any], str, str | None, str]] = [
    ("malformed TOML", {"conf.d/20-bad.toml": 'x = 1\n[clusters.c0\nbind = "a"\n'},
     "conf.d/20-bad.toml", None, "invalid TOML: Expected ']' at the end of a table declaration "
     "(at line 2, column 13)"),
    ("TOML duplicate key", {"conf.d/20-bad.toml": "[defaults]\nfall = 1\nfall = 2\n"},
     "conf.d/20-bad.toml", None, "(at line 3"),
    ("malformed JSON", {"conf.d/20-bad.json": '{"defaults": {"fall": 3,}}'},
     "conf.d/20-bad.json", None, "invalid JSON: Expecting property name enclosed in double "
     "quotes: line 1 column 25"),
    ("JSON array at top", {"conf.d/20-bad.json": "[1, 2]"}, "conf.d/20-bad.json", None,
     "the top level must be an object, got list"),
    ("JSON string at top", {"conf.d/20-bad.json": '"x"'}, "conf.d/20-bad.json", None,
     "the top level must be an object, got str"),
    ("JSON empty", {"conf.d/20-bad.json": ""}, "conf.d/20-bad.json", None, "invalid JSON"),
    ("JSON duplicate key", {"conf.d/20-bad.json": '{"defaults": {"fall": 1, "fall": 2}}'},
     "conf.d/20-bad.json", None, "duplicate key fall"),
    ("JSON NaN", {"conf.d/20-bad.json": '{"defaults": {"fall": NaN}}'}, "conf.d/20-bad.json",
     None, "NaN is not valid JSON"),
    ("binary file", {"conf.d/20-bin.toml": b"\x7fELF\x02\x01\x01\x00\x00\x00"},
     "conf.d/20-bin.toml", None, "binary file"),
    ("not UTF-8", {"conf.d/20-latin1.toml": 'check_path = "/caf\xe9"'.encode("latin-1")},
     "conf.d/20-latin1.toml", None, "not UTF-8 text"),
    ("huge integer", {"conf.d/20-big.toml": "[defaults]\nfall = " + "9" * 5000},
     "conf.d/20-big.toml", None, "invalid TOML"),
    ("deep nesting TOML", {"conf.d/20-deep.toml": "x = " + "[" * 5000 + "]" * 5000},
     "conf.d/20-deep.toml", None, "nested"),
    ("deep nesting JSON", {"conf.d/20-deep.json": '{"x": ' + "[" * 50 + "]" * 50 + "}"},
     "conf.d/20-deep.json", None, "nested more than"),
    ("too large", {"conf.d/20-big.toml": "# " + "x" * (1 << 20)}, "conf.d/20-big.toml", None,
     "larger than"),
    ("broken main file", {"haproxy-k8s.toml": "[haproxy"}, "haproxy-k8s.toml", None,
     "invalid TOML"),
    # a table in one file and a value in a later one, both ways round
    ("table then value", {"conf.d/10-c0.toml": CLUSTER,
                          "conf.d/20-clash.toml": 'clusters.c0.nodes = "m1"\n'},
     "conf.d/20-clash.toml", "clusters.c0.nodes",
     "is a value here but a table in conf.d/10-c0.toml"),
    ("value then table", {"conf.d/10-a.toml": 'defaults = "x"\n',
                          "conf.d/20-b.json": '{"defaults": {"fall": 3}}'},
     "conf.d/20-b.json", "defaults", "is a table here but a value in conf.d/10-a.toml"),
    # schema errors come back attributed to the file that set the key
    ("port 70000", {"conf.d/10-c0.toml": CLUSTER,
                    "conf.d/20-m4.toml": '[clusters.c0.nodes.m4]\naddress = "h4"\nport = 70000\n'},
     "conf.d/20-m4.toml", "clusters.c0.nodes.m4.port", "70000 is not a port"),
    ("unknown key", {"conf.d/10-c0.toml": CLUSTER,
                     "conf.d/20-x.json": '{"defaults": {"chek_interval": "2s"}}'},
     "conf.d/20-x.json", "defaults.chek_interval", "did you mean 'check_interval'?"),
    ("name injection", {"conf.d/10-c0.toml": CLUSTER,
                        "conf.d/20-x.toml": '[clusters.c0.nodes."m5 backup\\n  server x"]\n'
                                            'address = "127.0.8.15"\n'},
     "conf.d/20-x.toml", 'clusters.c0.nodes."m5 backup\\n  server x"', "node name"),
    ("address injection", {"conf.d/10-c0.toml": CLUSTER,
                           "conf.d/20-x.toml": '[clusters.c0.nodes.m5]\n'
                                               'address = "127.0.8.15 # x"\n'},
     "conf.d/20-x.toml", "clusters.c0.nodes.m5.address", "not an IP address or a DNS name"),
    ("duplicate bind", {"conf.d/10-c0.toml": CLUSTER,
                        "conf.d/20-c1.toml": CLUSTER.replace("c0", "c1")},
     "conf.d/20-c1.toml", "clusters.c1.bind",
     "conflicts with 127.0.8.1:6443 of clusters.c0.bind (conf.d/10-c0.toml)"),
    ("zero nodes", {"conf.d/10-c0.toml": '[clusters.c0]\nbind = "10.1.1.1:6443"\n'
                                         "[clusters.c0.nodes]\n"},
     "conf.d/10-c0.toml", "clusters.c0.nodes", "has no nodes"),
    ("last node disabled", {"conf.d/10-c0.toml": CLUSTER,
                            "conf.d/20-off.toml": "[clusters.c0.nodes.m1]\nenabled = false\n"
                                                  "[clusters.c0.nodes.m2]\nenabled = false\n"},
     "conf.d/20-off.toml", "clusters.c0.nodes", "has every node disabled"),
    ("missing address", {"conf.d/10-c0.toml": CLUSTER,
                         "conf.d/20-m5.toml": "[clusters.c0.nodes.m5]\nport = 6443\n"},
     "conf.d/20-m5.toml", "clusters.c0.nodes.m5.address", "missing (required)"),
    ("empty directory", {}, "conf.d/", "clusters", "no clusters configured"),
    ("only leftovers", {"conf.d/10-c0.toml~": CLUSTER}, "conf.d/", "clusters",
     "no clusters configured"),
]


@pytest.mark.parametrize(("files", "file", "key", "fragment"), [c[1:] for c in BAD_FILES],
                         ids=[c[0] for c in BAD_FILES])
def test_bad_files(tmp_path: Path, files: dict[str, Any], file: str, key: str | None,
                   fragment: str) -> None:
    err = load_error(write(tmp_path, files))
    assert (err.file, err.key) == (file, key)
    assert fragment in err.message
    assert str(err).startswith(f"{file}: {key}: " if key else f"{file}: ")


def test_missing_config_dir(tmp_path: Path) -> None:
    err = load_error(tmp_path / "nope")
    assert err.file == str(tmp_path / "nope")
    assert "config directory does not exist" in str(err)


def test_config_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    assert "is not a directory" in str(load_error(tmp_path / "f"))


def test_conf_d_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "conf.d").write_text("")
    err = load_error(tmp_path)
    assert (err.file, err.message) == ("conf.d", "is not a directory")


def test_broken_symlink(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-x.toml").symlink_to(tmp_path / "gone.toml")
    err = load_error(tmp_path)
    assert (err.file, err.message) == ("conf.d/10-x.toml", "is a broken symbolic link")


def test_fifo_is_reported_not_waited_on(tmp_path: Path) -> None:
    # Opening a FIFO for reading blocks until a writer appears: the daemon would hang.
    (tmp_path / "conf.d").mkdir()
    os.mkfifo(tmp_path / "conf.d" / "10-x.toml")
    err = load_error(tmp_path)
    assert (err.file, err.message) == ("conf.d/10-x.toml", "not a regular file")


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, {"conf.d/10-c0.toml": b"\xef\xbb\xbf" + CLUSTER.encode()})
    assert load_config(tmp_path).clusters[0].name == "c0"


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"conf.d/10-c0.toml": CLUSTER, "conf.d/20-secret.toml": "[defaults]\n"})
    secret = tmp_path / "conf.d" / "20-secret.toml"
    secret.chmod(0)
    if os.geteuid() == 0:
        # root bypasses file permissions, so chmod 000 alone proves nothing here.
        # Stand in for the kernel: open() of exactly this file fails with EACCES, as
        # it would for the unprivileged user the daemon may run as. Non-root runs
        # (CI, developers) exercise the real thing.
        real_open = os.open

        def open_as_non_root(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if Path(path) == secret:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", open_as_non_root)
    err = load_error(tmp_path)
    assert (err.file, err.message) == ("conf.d/20-secret.toml", "cannot read: permission denied")


def test_file_vanishing_between_listing_and_reading(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"conf.d/10-c0.toml": CLUSTER, "conf.d/20-going.toml": "[defaults]\n"})
    real_sources = loader._sources

    def list_then_delete(config_dir: Path) -> list[tuple[Path, str]]:
        # An editor or config manager removes the file right after we listed it.
        files = real_sources(config_dir)
        (config_dir / "conf.d" / "20-going.toml").unlink()
        return files

    monkeypatch.setattr(loader, "_sources", list_then_delete)
    err = load_error(tmp_path)
    assert (err.file, err.message) == ("conf.d/20-going.toml", "vanished while being read")


def test_cached_parse_is_not_shared_between_loads(tmp_path: Path) -> None:
    """Parsed drop-ins are remembered; merging must never write into the cached copy."""
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "10-a.toml").write_text(
        '[clusters.c0]\nbind = "127.0.8.1:6443"\n[clusters.c0.nodes.m1]\naddress = "127.0.8.10"\n')
    (conf_d / "20-b.toml").write_text('[clusters.c0.nodes.m2]\naddress = "127.0.8.11"\n')
    assert [n.name for n in load_config(tmp_path).clusters[0].nodes] == ["m1", "m2"]
    (conf_d / "20-b.toml").unlink()
    # Had the merge written m2 into 10-a.toml's cached tables, m2 would come back here.
    assert [n.name for n in load_config(tmp_path).clusters[0].nodes] == ["m1"]


# --- the state dir, found without parsing every drop-in ----------------------------
STATE_DIR_CASES: dict[str, dict[str, str | bytes]] = {
    "default": {"conf.d/10-c.toml": CLUSTER},
    "main file": {"haproxy-k8s.toml": '[haproxy]\nstate_dir = "/run/main"\n',
                  "conf.d/10-c.toml": CLUSTER},
    "a drop-in moves it": {"haproxy-k8s.toml": '[haproxy]\nstate_dir = "/run/main"\n',
                           "conf.d/90-move.toml": '[haproxy]\nstate_dir = "/run/moved"\n'},
    "spelled with an escape": {"conf.d/90-move.json":
                               '{"haproxy": {"state\\u005fdir": "/run/escaped"}}'},
    "a broken drop-in beside": {"haproxy-k8s.toml": '[haproxy]\nstate_dir = "/run/main"\n',
                                "conf.d/10-c.toml": CLUSTER, "conf.d/20-bad.toml": "[oops\n"},
    "a broken drop-in moves it": {"haproxy-k8s.toml": '[haproxy]\nstate_dir = "/run/main"\n',
                                  "conf.d/20-bad.toml": '[haproxy]\nstate_dir = "/run/x"\n[x\n'},
    "relative in a drop-in": {"haproxy-k8s.toml": '[haproxy]\nstate_dir = "/run/main"\n',
                              "conf.d/90-move.toml": '[haproxy]\nstate_dir = "run/rel"\n'},
    "relative in the main file": {"haproxy-k8s.toml": '[haproxy]\nstate_dir = "run/rel"\n'},
    "too long": {"haproxy-k8s.toml": f'[haproxy]\nstate_dir = "/{"x" * 100}"\n'},
    "main file broken": {"haproxy-k8s.toml": '[haproxy]\nstate_dir = "/run/main"\n[x\n'},
    "haproxy not a table": {"haproxy-k8s.toml": 'haproxy = "x"\n'},
}


def _full_state_dir(config_dir: Path) -> str:
    """state_dir_hint()'s answer the long way: the full load, then its fallbacks."""
    try:
        return load_config(config_dir).haproxy.state_dir
    except ConfigError:
        pass
    for read in (lambda d: load_raw(d)[0], loader._main_raw):
        try:
            value = read(config_dir).get("haproxy", {}).get("state_dir")
        except (ConfigError, OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str) and value.startswith("/"):
            return value
    return DEFAULT_STATE_DIR


@pytest.mark.parametrize("files", STATE_DIR_CASES.values(), ids=STATE_DIR_CASES.keys())
def test_state_dir_hint_is_the_full_answer(tmp_path: Path,
                                          files: dict[str, str | bytes]) -> None:
    """The quick look (main file alone, when no drop-in can name the key) agrees with
    loading everything, in each case that could tell them apart."""
    write(tmp_path, files)
    assert loader.state_dir_hint(tmp_path) == _full_state_dir(tmp_path)


QUICK_CASES: dict[str, dict[str, str | bytes]] = {
    **STATE_DIR_CASES,
    "leftovers and hidden files": {
        "haproxy-k8s.toml": '[haproxy]\nstate_dir = "/run/main"\n',
        "conf.d/90-move.toml~": '[haproxy]\nstate_dir = "/run/x"\n',
        "conf.d/.90-move.toml": '[haproxy]\nstate_dir = "/run/x"\n',
        "conf.d/90-move.toml.dpkg-new": '[haproxy]\nstate_dir = "/run/x"\n',
        "conf.d/90-move.yaml": "haproxy: {state_dir: /run/x}\n"},
    "a directory named like a drop-in": {
        "haproxy-k8s.toml": '[haproxy]\nstate_dir = "/run/main"\n',
        "conf.d/90-dir.toml/x": '[haproxy]\nstate_dir = "/run/x"\n'},
    "a drop-in too large to look at": {
        "haproxy-k8s.toml": '[haproxy]\nstate_dir = "/run/main"\n',
        "conf.d/90-big.toml": "# " + "x" * 70_000 + "\n"},
    "no drop-ins": {"haproxy-k8s.toml": '[haproxy]\nstate_dir = "/run/main"\n'},
    "main file without the key": {"haproxy-k8s.toml": '[haproxy]\nbinary = "/x"\n'},
    "main file broken without the key": {"haproxy-k8s.toml": "[haproxy\n"},
    "main file not UTF-8": {"haproxy-k8s.toml": b'[haproxy]\nstate_dir = "/run/\xff"\n'},
}


@pytest.mark.parametrize("files", QUICK_CASES.values(), ids=QUICK_CASES.keys())
def test_the_quick_state_dir_is_the_full_answer_or_none(tmp_path: Path,
                                                        files: dict[str, str | bytes]) -> None:
    """config/statedir.py (the CLI's, without the config model) answers only what
    loading everything would, and says nothing for a config dir that is missing."""
    write(tmp_path, files)
    assert statedir.quick_state_dir(tmp_path) in (None, _full_state_dir(tmp_path))
    assert loader.state_dir_hint(tmp_path) == _full_state_dir(tmp_path)
    assert statedir.quick_state_dir(tmp_path / "missing") is None


def test_state_dir_hint_reads_no_drop_in_that_cannot_name_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, STATE_DIR_CASES["main file"])
    monkeypatch.setattr(loader, "load_raw", None)  # any full parse would fail here
    assert loader.state_dir_hint(tmp_path) == "/run/main"

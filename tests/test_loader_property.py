"""Property tests: whatever is in the config dir, the loader returns a Config or
raises a ConfigError that names a file; it never crashes with anything else, and
what it accepts is safe to write into haproxy.cfg."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from haproxy_k8s.config.loader import load_config
from haproxy_k8s.config.model import Config
from haproxy_k8s.config.schema import SECTION_KEYS
from haproxy_k8s.errors import ConfigError

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Values that pass some check, so generated configs get past the first error.
PLAUSIBLE: list[Any] = [
    "2s", "500ms", "0s", "1m", "25d", "2", "", "haproxy", "/usr/sbin/haproxy", "/run/hk",
    "roundrobin", "leastconn", "https", "tcp", "/readyz", "/etc/ca.pem", "127.0.0.0/8",
    "192.168.8.1:6443", "*:6443", "[::1]:6443", "127.0.0.1:8404", "10.0.0.1", "::1",
    "m1.example.com", "a b", "x\n#", 0, 1, 3, 100, 6443, 65536, True, False,
]
ALL_KEYS = sorted(set().union(*SECTION_KEYS.values()))
NAMES = ["c0", "c1", "m1", "m2", "a.b", "Bad", "a b", "x\nserver", "#", ""]

scalars = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
plausible_lists = st.lists(st.sampled_from(PLAUSIBLE), min_size=0, max_size=3)
leaves = scalars | plausible_lists
keys = st.sampled_from(ALL_KEYS + NAMES) | st.text(max_size=6)


def section(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """A table of mostly real keys for `kind`, with an occasional stray one."""
    known = st.sampled_from(sorted(SECTION_KEYS[kind]))
    return st.dictionaries(known | keys, leaves, max_size=6)


nodes = st.dictionaries(st.sampled_from(NAMES),
                        section("node") | st.fixed_dictionaries({"address": st.sampled_from(
                            ["10.0.0.1", "10.0.0.2", "h1", "::1", "256.0.0.1"])}),
                        max_size=3)
clusters = st.dictionaries(
    st.sampled_from(NAMES),
    st.builds(lambda fixed, extra: {**extra, **fixed},
              st.fixed_dictionaries({}, optional={"bind": leaves, "nodes": nodes}),
              section("defaults")),
    max_size=3,
)
# Shaped like the schema, so generated input reaches the deep checks.
shaped = st.fixed_dictionaries({}, optional={
    "haproxy": section("haproxy"), "defaults": section("defaults"), "stats": section("stats"),
    "metrics": section("metrics"), "watch": section("watch"), "clusters": clusters,
    "junk": leaves,
})


# A valid value for each key, by the kind of value it takes.
VALID_BY_KEY: dict[str, tuple[Any, ...]] = {
    **dict.fromkeys(["check_interval", "fast_interval", "down_interval", "check_timeout",
                     "connect_timeout",
                     "client_timeout", "server_timeout", "client_fin_timeout",
                     "server_fin_timeout", "hard_stop_after", "debounce", "max_wait"],
                    ("2s", "500ms", "1m")),
    **dict.fromkeys(["slowstart", "drain_grace"], ("0s", "10s")),
    **dict.fromkeys(["fall", "rise", "retries", "error_limit", "mworker_max_reloads", "maxconn",
                     "weight"],
                    (1, 3, 100)),
    **dict.fromkeys(["redispatch", "tcpka", "shutdown_sessions_on_down", "server_state",
                     "backup", "enabled"], (True, False)),
    **dict.fromkeys(["ca_file", "client_cert", "password_file"], ("", "/etc/x.pem")),
    **dict.fromkeys(["user", "group"], ("", "haproxy")),
    "balance": ("roundrobin", "source"), "check": ("tcp", "tls"), "check_path": ("/livez",),
    "binary": ("haproxy", "/usr/sbin/haproxy"), "state_dir": ("/run/x",),
    "bind": ("10.9.9.9:6443", "", ["[::1]:7443", "10.9.9.8:6443"]),
    "allow": (["10.0.0.0/8"],), "address": ("10.0.0.2", "h2.example"), "port": (1, 6443),
}


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document with a few keys set to other values: input that passes
    most checks, so both outcomes, and the checks deep down, get exercised."""
    document: dict[str, Any] = {"clusters": {"c0": {
        "bind": "192.168.8.1:6443", "nodes": {"m1": {"address": "10.0.0.1"}}}}}
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(sorted(set(SECTION_KEYS) - {""})))
        cluster = draw(st.sampled_from(["c0", "c0", "c1"]))
        prefix = {"cluster": ("clusters", cluster),
                  "node": ("clusters", cluster, "nodes", draw(st.sampled_from(["m1", "m2"])))
                  }.get(kind, (kind,))
        # Mostly real keys with fitting values; sometimes anything at all.
        roll = draw(st.integers(0, 9))
        if roll < 8:
            key = draw(st.sampled_from(sorted(SECTION_KEYS[kind])))
            fitting = st.sampled_from(VALID_BY_KEY.get(key, ({},)))
            value = draw(fitting if roll < 6 else leaves)
        else:
            key, value = draw(keys), draw(leaves)
        set_path(document, (*prefix, key), value)
    return document


def set_path(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    table = document
    for key in path[:-1]:
        if not isinstance(table.get(key), dict):
            table[key] = {}
        table = table[key]
    table[path[-1]] = value


# Any nesting at all.
nested = st.recursive(leaves, lambda children: st.dictionaries(keys, children, max_size=4)
                      | st.lists(children, max_size=3), max_leaves=25)
documents = st.one_of(mutated(), mutated(), shaped, st.dictionaries(keys, nested, max_size=5))


# --- writing generated documents as drop-ins --------------------------------------


def toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(value, repr(value))
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(document: dict[str, Any]) -> str:
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in document.items())


def write_dropin(config_dir: Path, name: str, document: dict[str, Any], fmt: str) -> None:
    dropins = config_dir / "conf.d"
    dropins.mkdir(exist_ok=True)
    text = json.dumps(document) if fmt == "json" else to_toml(document)
    (dropins / f"{name}.{fmt}").write_text(text, encoding="utf-8")


# --- the properties ----------------------------------------------------------------

FORMATS = st.sampled_from(["toml", "json"])
SAFE = re.compile(r"[A-Za-z0-9.:\[\]/_@+,=%?&();*!~-]*")


def load_or_error(config_dir: Path) -> Config | ConfigError:
    try:
        config = load_config(config_dir)
    except ConfigError as e:
        # Every error tells the operator where to look.
        assert e.file, f"no file in {e!r}"
        assert "\n" not in str(e), f"multi-line error {e!r}"
        event("ConfigError")
        return e
    event("Config")
    return config


def assert_safe(config: Config) -> None:
    """Everything from the drop-ins that reaches haproxy.cfg is a plain token."""
    assert config.clusters
    assert list(config.clusters) == sorted(config.clusters, key=lambda c: c.name)
    for cluster in config.clusters:
        assert cluster.nodes
        assert list(cluster.nodes) == sorted(cluster.nodes, key=lambda n: n.name)
        s = cluster.settings
        tokens = [cluster.name, s.check_path, s.ca_file or "", s.client_cert or ""]
        tokens += [str(b) for b in cluster.binds]
        tokens += [t for n in cluster.nodes for t in (n.name, n.address)]
        for token in tokens:
            assert SAFE.fullmatch(token), token


@PROPERTY
@given(document=documents, fmt=FORMATS)
def test_any_dropin_yields_config_or_config_error(document: dict[str, Any], fmt: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_dropin(Path(tmp), "50-generated", document, fmt)
        result = load_or_error(Path(tmp))
        if isinstance(result, Config):
            assert_safe(result)


@PROPERTY
@given(first=mutated(), second=mutated() | shaped, first_fmt=FORMATS, second_fmt=FORMATS)
def test_two_dropins_merge_into_config_or_config_error(first: dict[str, Any],
                                                        second: dict[str, Any], first_fmt: str,
                                                        second_fmt: str) -> None:
    # Two files exercise the merge: clashes between a table and a value, overrides.
    with tempfile.TemporaryDirectory() as tmp:
        write_dropin(Path(tmp), "10-first", first, first_fmt)
        write_dropin(Path(tmp), "20-second", second, second_fmt)
        result = load_or_error(Path(tmp))
        if isinstance(result, Config):
            assert_safe(result)


@PROPERTY
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
       suffix=st.sampled_from([".toml", ".json"]))
def test_random_bytes_yield_config_or_config_error(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dropins = Path(tmp) / "conf.d"
        dropins.mkdir()
        (dropins / f"10-random{suffix}").write_bytes(data)
        assert isinstance(load_or_error(Path(tmp)), ConfigError)  # no clusters in 200 bytes


@PROPERTY
@given(field=st.sampled_from(["name", "node", "address", "check_path", "ca_file", "bind"]),
       text=st.text(max_size=30) | st.sampled_from(["m1", "10.0.0.1", "/readyz", "/etc/ca.pem",
                                                    "10.0.0.9:6443"]))
def test_accepted_strings_are_always_safe(field: str, text: str) -> None:
    # Direct injection attempts: one hostile string in each place that reaches haproxy.cfg.
    node = {"address": text if field == "address" else "10.0.0.1"}
    cluster: dict[str, Any] = {
        "bind": text if field == "bind" else "10.0.0.9:6443",
        "nodes": {text if field == "node" else "m1": node},
    }
    if field in ("check_path", "ca_file"):
        cluster[field] = text
    name = text if field == "name" else "c0"
    with tempfile.TemporaryDirectory() as tmp:
        write_dropin(Path(tmp), "10-x", {"clusters": {name: cluster}}, "json")
        result = load_or_error(Path(tmp))
        if isinstance(result, Config):
            assert_safe(result)

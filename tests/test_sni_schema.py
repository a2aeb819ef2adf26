"""The SNI, fail-open and first-check keys: table-driven, raw dicts in, Config or error out.

Overlaps name both files: each cluster is attributed to its own drop-in here.
"""

from __future__ import annotations

from typing import Any

import pytest

from haproxy_k8s.config.model import Bind
from haproxy_k8s.config.schema import build_config
from haproxy_k8s.config.sni import own_binds, shared_binds
from haproxy_k8s.errors import ConfigError

SHARED = "127.0.8.1:6443"


def cluster(sni: Any = None, bind: Any = SHARED, **extra: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"bind": bind, "nodes": {"m1": {"address": "127.0.8.10"}}, **extra}
    if sni is not None:
        table["sni"] = sni
    return table


def files_of(raw: dict[str, Any]) -> dict[tuple[str, ...], str]:
    """Cluster NAME comes from conf.d/NAME.toml; everything else from the main file."""
    prov: dict[tuple[str, ...], str] = {}

    def walk(value: Any, path: tuple[str, ...]) -> None:
        file = f"conf.d/{path[1]}.toml" if len(path) >= 2 and path[0] == "clusters" \
            else "haproxy-k8s.toml"
        if path:
            prov[path] = file
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*path, key))

    walk(raw, ())
    return prov


def build(**clusters: dict[str, Any]) -> Any:
    raw = {"clusters": clusters}
    return build_config(raw, files_of(raw))


def error(**clusters: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build(**clusters)
    return info.value


def test_clusters_with_sni_share_a_bind() -> None:
    config = build(a=cluster(["a.example.com"], sni_default=True),
                   b=cluster(["b.example.com", "*.b.example.com"], bind=[SHARED, "127.0.8.1:7443"]))
    shared = shared_binds(config)
    assert list(shared) == [Bind("127.0.8.1", 6443)]
    assert [c.name for c in shared[Bind("127.0.8.1", 6443)]] == ["a", "b"]
    b = config.cluster("b")
    assert b is not None and b.sni == ("b.example.com", "*.b.example.com")
    assert own_binds(b, shared) == (Bind("127.0.8.1", 7443),)
    assert config.cluster("a").sni_default is True


def test_a_lone_cluster_may_name_sni_and_keeps_its_own_frontend() -> None:
    config = build(a=cluster(["a.example.com"]))
    assert shared_binds(config) == {}


@pytest.mark.parametrize(("clusters", "file", "key", "words"), [
    # sharing without sni is a plain bind conflict, with a hint
    ({"a": cluster(["a.example.com"]), "b": cluster()}, "conf.d/b.toml", "clusters.b.bind",
     "names its `sni`"),
    ({"a": cluster(), "b": cluster()}, "conf.d/b.toml", "clusters.b.bind",
     "clusters.a.bind (conf.d/a.toml)"),
    # the same hostname twice on one bind: both places named
    ({"a": cluster(["x.example.com"]), "b": cluster(["y.example.com", "x.example.com"])},
     "conf.d/b.toml", "clusters.b.sni", "'x.example.com' on 127.0.8.1:6443 is already routed "
     "to another cluster by clusters.a.sni (conf.d/a.toml)"),
    ({"a": cluster(["a.example.com"], sni_default=True),
      "b": cluster(["b.example.com"], sni_default=True)},
     "conf.d/b.toml", "clusters.b.sni_default", "clusters.a.sni_default (conf.d/a.toml)"),
    # hostnames are strict lowercase DNS names, "*." allowed in front only
    ({"a": cluster(["A.example.com"])}, "conf.d/a.toml", "clusters.a.sni", "lowercase"),
    ({"a": cluster(["a.*.example.com"])}, "conf.d/a.toml", "clusters.a.sni", "DNS name"),
    ({"a": cluster(["*example.com"])}, "conf.d/a.toml", "clusters.a.sni", "DNS name"),
    ({"a": cluster(["a b"])}, "conf.d/a.toml", "clusters.a.sni", "DNS name"),
    ({"a": cluster(["10.0.0.1"])}, "conf.d/a.toml", "clusters.a.sni", "DNS name"),
    ({"a": cluster("a.example.com")}, "conf.d/a.toml", "clusters.a.sni", "list"),
    ({"a": cluster([])}, "conf.d/a.toml", "clusters.a.sni", "non-empty"),
    ({"a": cluster(["a.example.com", "a.example.com"])}, "conf.d/a.toml", "clusters.a.sni",
     "twice"),
    ({"a": cluster(["a.example.com"], sni_default="yes")}, "conf.d/a.toml",
     "clusters.a.sni_default", "true or false"),
    ({"a": cluster(fail_open=1)}, "conf.d/a.toml", "clusters.a.fail_open", "true or false"),
    ({"a": cluster(sni_inspect_delay=5)}, "conf.d/a.toml", "clusters.a.sni_inspect_delay",
     "unit"),
])
def test_bad_sni_configs_name_file_and_key(clusters: dict[str, Any], file: str, key: str,
                                          words: str) -> None:
    e = error(**clusters)
    assert (e.file, e.key) == (file, key), str(e)
    assert words in str(e)


def test_same_hostname_on_different_binds_is_fine() -> None:
    build(a=cluster(["x.example.com"], bind="127.0.8.1:6443"),
          b=cluster(["x.example.com"], bind="127.0.8.1:7443"))


def test_fail_open_and_first_check_keys() -> None:
    raw = {"defaults": {"fail_open": False, "sni_inspect_delay": "1s"},
           "haproxy": {"max_spread_checks": "50ms"},
           "clusters": {"a": cluster(fail_open=True), "b": cluster(bind="127.0.8.1:7443")}}
    config = build_config(raw, files_of(raw))
    assert config.haproxy.max_spread_checks_ms == 50
    assert config.defaults.sni_inspect_delay_ms == 1000
    assert config.cluster("a").settings.fail_open is True  # type: ignore[union-attr]
    assert config.cluster("b").settings.fail_open is False  # type: ignore[union-attr]

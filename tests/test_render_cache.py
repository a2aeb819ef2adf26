"""The renderer reuses each cluster's text across renders (haproxy/render.py): a
render after any change must be the text a render from nothing gives."""

from __future__ import annotations

import dataclasses
import enum
import re
from pathlib import Path
from typing import Any

import pytest

from haproxy_k8s.apply.candidate import dry_run
from haproxy_k8s.config.loader import load_config
from haproxy_k8s.config.model import ClusterSettings, Config
from haproxy_k8s.haproxy import render as render_mod
from testkit.configdir import ConfigDir
from testkit.ports import free_port

FULL = Path(__file__).resolve().parent / "fixtures" / "configs" / "full"


def _other(value: Any) -> Any:
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, enum.Enum):
        return next(m for m in type(value) if m is not value)
    if isinstance(value, int):
        return value * 2 + 1000
    if isinstance(value, str):
        return value + "-changed"
    if value is None:
        return "/etc/haproxy-k8s/changed.pem"
    raise AssertionError(f"no other value for {value!r}")


def _changed(settings: ClusterSettings, name: str) -> ClusterSettings:
    return dataclasses.replace(settings, **{name: _other(getattr(settings, name))})


def _with(config: Config, name: str) -> Config:
    """`config` with setting `name` changed in [defaults] and in every cluster."""
    defaults = _changed(config.defaults, name)
    clusters = tuple(dataclasses.replace(c, settings=defaults if c.settings == config.defaults
                                         else _changed(c.settings, name))
                     for c in config.clusters)
    return dataclasses.replace(config, defaults=defaults, clusters=clusters)


def _cold(config: Config) -> str:
    render_mod._blocks = {}
    return render_mod.render(config, drop_privileges=False)


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(ClusterSettings)])
def test_a_changed_setting_renders_as_from_nothing(name: str) -> None:
    config = load_config(FULL)
    render_mod.render(config, drop_privileges=False)  # every block kept
    changed = _with(config, name)
    warm = render_mod.render(changed, drop_privileges=False)
    assert warm == _cold(changed)


def test_a_changed_option_line_renders_no_cluster_again() -> None:
    """A [defaults] change that only touches option lines (in the named defaults
    sections) reuses every inheriting cluster's text."""
    config = load_config(FULL)
    _cold(config)
    before = set(render_mod._blocks)
    changed = _with(config, "connect_timeout_ms")
    text = render_mod.render(changed, drop_privileges=False)
    rendered_again = set(render_mod._blocks) - before
    # Only the clusters with option lines of their own change their sections' name.
    own = [c for c in config.clusters
           if render_mod.defaults_name(c, config) != render_mod.SHARED_DEFAULTS]
    assert len(rendered_again) == len(own) < len(config.clusters)
    assert text == _cold(changed)


def test_settings_that_differ_only_in_fail_open_pass_haproxy_check(
        haproxy_bin: str, tmp_path: Path) -> None:
    """Equal option lines share a defaults section whatever `fail_open` says; the
    fail-open section is there for every cluster that needs it (b: a backup
    node keeps its twins in a backend of their own; d's are its backups)."""
    dropins = ConfigDir(tmp_path)
    backup = '[clusters.b.nodes.m2]\naddress = "127.0.8.11"\nbackup = true\n'
    for name, extra in {"a": "retries = 4\nfail_open = false\n",
                        "b": "retries = 4\nfail_open = true\n" + backup,
                        "c": "fail_open = false\n", "d": ""}.items():
        dropins.cluster(name, free_port(), {"m1": ("127.0.8.10", 6443)})
        dropins.write(f"20-{name}.toml", f"[clusters.{name}]\n{extra}")
    loaded = load_config(tmp_path)
    config = dataclasses.replace(
        loaded, haproxy=dataclasses.replace(loaded.haproxy, binary=haproxy_bin))
    text = render_mod.render(config, drop_privileges=False)
    # Every section a proxy names is there, once; c shares the [defaults] ones.
    named = re.findall(r"^defaults (\S+)$", text, re.M)
    assert sorted(named) == sorted(set(re.findall(r" from (\S+)$", text, re.M)))
    assert "backend be_c from k8s_be" in text and "backend fo_b from " in text
    assert "backend fo_d " not in text and "    server fo_m1 127.0.8.10:6443 " in text
    dry_run(config, promex=True)  # raises when HAProxy refuses it

"""The renderer reuses each cluster's text across renders (haproxy/render.py): a
render after any change must be the text a render from nothing gives."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any

import pytest

from haproxy_k8s.config.loader import load_config
from haproxy_k8s.config.model import ClusterSettings, Config
from haproxy_k8s.haproxy import render as render_mod

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
    # Only the clusters with settings of their own change their sections' name.
    assert len(rendered_again) == sum(c.settings != config.defaults
                                      for c in config.clusters) < len(config.clusters)
    assert text == _cold(changed)

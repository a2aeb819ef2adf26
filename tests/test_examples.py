"""examples/ (the origin router as drop-ins), golden rendered configs, and the docs' key list.

`haproxy -c` only parses: it binds nothing and sends nothing, so the examples' 192.168.x
addresses are safe to check. No test here talks to them.

Golden files: tests/golden/NAME.cfg is the rendered haproxy.cfg of each config dir, with
`drop_privileges=False` and `promex=True` so the output does not depend on who runs the
tests or how HAProxy was built. After a deliberate template change, regenerate them with
`UPDATE_GOLDEN=1 pytest tests/test_examples.py` and review the diff.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from daemonutil import cli

from haproxy_k8s.config.loader import load_config, load_raw
from haproxy_k8s.config.model import Bind
from haproxy_k8s.config.schema import SECTION_KEYS
from haproxy_k8s.haproxy.render import render
from haproxy_k8s.vip.schema import KEYS as VIP_KEYS

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "configs"
GOLDEN = Path(__file__).resolve().parent / "golden"
CONFIG_DOC = REPO / "docs" / "configuration.md"


def examples_with_optional_dropins(target: Path) -> Path:
    """A copy of examples/ with every `*.example` drop-in switched on."""
    shutil.copytree(EXAMPLES, target)
    for example in sorted((target / "conf.d").glob("*.example")):
        example.rename(example.with_suffix(""))
    return target


def check(config_dir: Path, haproxy_bin: str) -> str:
    # The binary's directory first on PATH: examples say `binary = "haproxy"`, and a
    # non-root PATH may lack /usr/sbin.
    path = f"{os.path.dirname(haproxy_bin)}{os.pathsep}{os.environ.get('PATH', '')}"
    # --no-bind-check: the examples bind the router's addresses, which this host lacks.
    done = cli("check", "--no-bind-check", "--config-dir", str(config_dir), PATH=path)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_examples_pass_check(haproxy_bin: str) -> None:
    assert "OK (1 cluster, 3 nodes)" in check(EXAMPLES, haproxy_bin)


def test_examples_with_every_optional_dropin_pass_check(haproxy_bin: str,
                                                        tmp_path: Path) -> None:
    config_dir = examples_with_optional_dropins(tmp_path / "examples")
    assert "OK (2 clusters, 7 nodes)" in check(config_dir, haproxy_bin)


def test_examples_are_the_origin_router() -> None:
    config = load_config(EXAMPLES)
    (cluster,) = config.clusters
    assert cluster.name == "cluster-0"
    assert cluster.binds == (Bind("192.168.8.1", 6443),)
    assert [(n.name, n.address, n.port) for n in cluster.nodes] == [
        (f"k8s-master-{i}", f"192.168.8.{9 + i}", 6443) for i in (1, 2, 3)]
    assert config.stats.bind is not None and config.stats.bind.port == 8404
    # The origin's timeouts and retries; checks are the https /readyz default.
    assert (cluster.settings.connect_timeout_ms, cluster.settings.retries) == (10_000, 3)
    assert (cluster.settings.check, cluster.settings.check_path) == ("https", "/readyz")


def test_example_dropins_are_ignored_until_renamed() -> None:
    """`.example` files are documentation; only *.toml and *.json count."""
    names = {n.name for c in load_config(EXAMPLES).clusters for n in c.nodes}
    assert "k8s-master-4" not in names


def _golden_cases() -> list[str]:
    return ["examples", "examples-all", *sorted(p.name for p in FIXTURES.iterdir())]


@pytest.mark.parametrize("name", _golden_cases())
def test_rendered_config_matches_golden_file(name: str, tmp_path: Path) -> None:
    if name == "examples":
        config_dir = EXAMPLES
    elif name == "examples-all":
        config_dir = examples_with_optional_dropins(tmp_path / "examples")
    else:
        config_dir = FIXTURES / name
    text = render(load_config(config_dir), drop_privileges=False, promex=True)
    golden = GOLDEN / f"{name}.cfg"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"{golden} missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == golden.read_text(), (
        f"rendered {name} differs from {golden}; if the change is intended, "
        "regenerate with UPDATE_GOLDEN=1 and review the diff")


def test_rendering_is_deterministic() -> None:
    config = load_config(FIXTURES / "full")
    assert render(config, drop_privileges=False) == render(
        load_config(FIXTURES / "full"), drop_privileges=False)


def _all_keys() -> set[str]:
    """Every key name the schema accepts in any table (`nodes` and `discovery` are tables)."""
    return {key for section, keys in SECTION_KEYS.items() if section for key in keys} \
        - {"nodes", "discovery"}


def test_full_fixture_sets_every_key() -> None:
    """So that its golden file shows every key's haproxy.cfg line."""
    raw, _ = load_raw(FIXTURES / "full")

    def keys(table: dict[str, Any]) -> set[str]:
        found = set()
        for key, value in table.items():
            found |= keys(value) if isinstance(value, dict) else {key}
        return found

    missing = _all_keys() - keys(raw)
    assert not missing, f"set these in tests/fixtures/configs/full: {sorted(missing)}"


def test_configuration_reference_documents_every_key() -> None:
    """docs/configuration.md has a row for every key the schema accepts."""
    text = CONFIG_DOC.read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.MULTILINE))
    known = _all_keys() | {"nodes", "discovery"} | VIP_KEYS
    assert not known - documented, f"undocumented keys: {sorted(known - documented)}"
    assert not documented - known, f"documented keys that do not exist: "\
        f"{sorted(documented - known)}"

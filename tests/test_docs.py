"""The docs say what the program does: rendered lines quoted in docs/configuration.md come
out of `render`, and the error messages docs/troubleshooting.md quotes come out of `check`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from daemonutil import cli

from haproxy_k8s.config.loader import load_config
from haproxy_k8s.haproxy.render import render

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
# A fenced block whose info string is this is output of `render` for examples/.
RENDERED = "haproxy rendered from examples/"


def fenced_blocks(text: str, info: str) -> list[list[str]]:
    return [m.group(1).splitlines() for m in
            re.finditer(rf"^```{re.escape(info)}\n(.*?)^```$", text, re.S | re.M)]


def sections(config_text: str) -> dict[str, set[str]]:
    """Each section header (`backend be_cluster-0`) -> its lines, stripped."""
    found: dict[str, set[str]] = {}
    current = ""
    for line in config_text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith((" ", "\t")):
            current = line.strip()
            found.setdefault(current, set())
        else:
            found[current].add(line.strip())
    return found


def test_rendered_lines_in_the_configuration_reference_are_rendered() -> None:
    blocks = fenced_blocks((DOCS / "configuration.md").read_text(), RENDERED)
    assert blocks, f"docs/configuration.md has no ```{RENDERED} block"
    rendered = sections(render(load_config(EXAMPLES), drop_privileges=False, promex=True))
    for block in blocks:
        current = ""
        for line in block:
            if not line.strip():
                continue
            if not line.startswith(" "):
                current = line.strip()
                assert current in rendered, f"section {current!r} is not rendered"
            else:
                assert line.strip() in rendered[current], \
                    f"{line.strip()!r} is not rendered in {current!r}"


# (drop-in, the message as docs/troubleshooting.md quotes it)
MESSAGES = [
    ('[clusters.cluster-0]\nbind = ["127.0.8.1:6443"]\n[clusters.cluster-0.nodes.m1]\n'
     'adress = "127.0.8.10"\n',
     "clusters.cluster-0.nodes.m1.adress: unknown key 'adress' (did you mean 'address'?)"),
    ('[clusters.cluster-0]\nbind = ["127.0.8.1:6443"]\n[clusters.cluster-0.nodes.m4]\n'
     'address = "127.0.8.10"\nport = 70000\n',
     "clusters.cluster-0.nodes.m4.port: 70000 is not a port (expected 1..65535)"),
    ("# nothing yet\n",
     "no clusters configured (add a [clusters.NAME] table with nodes in a drop-in)"),
    ('[clusters.cluster-0]\nbind = ["127.0.8.1:6443"]\n',
     "clusters.cluster-0: cluster has no nodes"),
    ('[clusters.cluster-0]\nbind = ["127.0.8.1:6443"]\n[clusters.cluster-0.nodes.m1]\n'
     "enabled = false\n", "cluster 'cluster-0' has every node disabled"),
    ('[clusters.cluster-0]\nbind = ["127.0.8.1:6443"]\ncheck = "https"\n'
     'ca_file = "/etc/haproxy-k8s/ca.crt"\n[clusters.cluster-0.nodes.m1]\n'
     'address = "127.0.8.10"\n',
     "clusters.cluster-0.ca_file: /etc/haproxy-k8s/ca.crt: no such file"),
]


@pytest.mark.parametrize(("dropin", "message"), MESSAGES)
def test_troubleshooting_quotes_real_messages(tmp_path: Path, dropin: str,
                                              message: str) -> None:
    if message.endswith("no such file") and Path("/etc/haproxy-k8s/ca.crt").exists():
        pytest.skip("this host has the file the example names")
    assert message in (DOCS / "troubleshooting.md").read_text()
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-c.toml").write_text(dropin)
    result = cli("check", "--config-dir", str(tmp_path))
    assert result.returncode == 1 and message in result.stderr, result.stderr

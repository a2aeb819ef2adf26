"""The CLI's parser and outputs without a daemon: flags, durations, help and table snapshots,
YAML, completions and the man page."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from golden_util import assert_golden
from helpers import require_tool

from haproxy_k8s.cli import build_parser
from haproxy_k8s.cli.common import duration, error_line, plural, to_yaml
from haproxy_k8s.cli.generate import bash, fish, man, zsh
from haproxy_k8s.cli.helptext import HELP, subcommands
from haproxy_k8s.cli.status import format_table
from haproxy_k8s.cli.views import EXIT_NO_SUCH, render
from haproxy_k8s.daemon.status import StatusDocument


@pytest.fixture
def columns(monkeypatch: pytest.MonkeyPatch) -> None:
    # argparse wraps to the terminal width: the snapshots are taken at 100.
    monkeypatch.setenv("COLUMNS", "100")


@pytest.mark.parametrize("argv", [
    ["--config-dir", "/d", "--state-dir", "/s", "status"],
    ["status", "--config-dir", "/d", "--state-dir", "/s"],
    ["--config-dir", "/d", "status", "--state-dir", "/s"],
])
def test_global_flags_go_anywhere(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.config_dir, args.state_dir) == ("/d", "/s")


def test_global_flags_default_to_none() -> None:
    args = build_parser().parse_args(["check"])
    assert args.config_dir is None and args.state_dir is None


@pytest.mark.parametrize(("text", "seconds"), [("5", 5.0), ("5s", 5.0), ("0.5", 0.5),
                                               ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0)])
def test_one_duration_syntax(text: str, seconds: float) -> None:
    assert duration(text) == seconds
    for argv in (["reload", "--timeout", text], ["drain", "c/n", "--wait", "--timeout", text]):
        assert build_parser().parse_args(argv).timeout == seconds


@pytest.mark.parametrize("text", ["", "5x", "-1", "nan", "s"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="duration"):
        duration(text)


def test_aliases_and_force() -> None:
    parser = build_parser()
    cordon = parser.parse_args(["cordon", "c/n"])
    assert cordon.state == "drain" and cordon.target == "c/n"
    assert parser.parse_args(["uncordon", "c/n"]).state == "ready"
    assert parser.parse_args(["maint", "c/n", "--force"]).force is True
    assert parser.parse_args(["status", "--json"]).output == "json"
    assert parser.parse_args(["status", "c0/m1", "-o", "wide"]).target == "c0/m1"


def test_every_command_has_help_with_an_example_and_exit_codes(columns: None) -> None:
    parser = build_parser()
    commands = subcommands(parser)
    assert set(commands) == set(HELP)
    for name, sub in commands.items():
        text = sub.format_help()
        examples = text.partition("\nexamples:\n")[2]
        assert "haproxy-k8s " in examples and "exit codes:\n  0  " in text, name
        assert_golden(f"cli/help-{name}.txt", text)
    assert_golden("cli/help.txt", parser.format_help())


def test_plurals_and_error_lines() -> None:
    assert (plural(1, "cluster"), plural(2, "cluster"), plural(0, "session")) == \
        ("1 cluster", "2 clusters", "0 sessions")
    # A ConfigError's message names its file already: not twice.
    assert error_line({"file": "conf.d/30-bad.toml",
                       "message": "conf.d/30-bad.toml: clusters.c0.nodes.m9.port: bad"}) == \
        "conf.d/30-bad.toml: clusters.c0.nodes.m9.port: bad"
    assert error_line({"file": "/etc/pw", "message": "cannot read"}) == "/etc/pw: cannot read"


# -- the status table and its outputs ----------------------------------------------------
def document() -> StatusDocument:
    node = {"address": "127.0.8.10", "port": 6443, "state": "UP", "check": "L7OK/200 in 2ms",
            "last_change_s": 3700, "sessions": 5, "admin": "ready", "weight": 100, "rate": 3,
            "origin": "conf.d/10-cluster-0.toml"}
    return StatusDocument.from_json({
        "daemon": {"pid": 10, "running": True, "generation": 7,
                   "applied_at": "2026-01-01T00:00:00.00Z",
                   "last_error": {"at": "2026-01-01T00:00:01.00Z", "file": "conf.d/30-bad.toml",
                                  "message": "conf.d/30-bad.toml: clusters.cluster-0.nodes."
                                             "m9.port: must be 1-65535, got 70000"}},
        "haproxy": {"pid": 11, "version": "2.6.12", "reloads": 3, "failed_reloads": 1,
                    "workers": [12], "reachable": True, "prometheus_exporter": True},
        "clusters": [{"name": "cluster-0", "bind": ["127.0.8.1:6443"], "nodes": [
            {**node, "name": "m1"},
            {**node, "name": "m2", "address": "127.0.8.11", "state": "DOWN",
             "check": "L4CON in 0ms", "check_detail": "Connection refused", "last_change_s": 42,
             "sessions": 0, "rate": 0},
            {**node, "name": "m3", "address": "127.0.8.12", "state": "DRAIN", "admin": "drain",
             "removing": True, "sessions": 2, "origin": ""}]}],
        "unreachable": [],
    })


@pytest.mark.parametrize("output", ["table", "wide"])
def test_table_layouts(output: str) -> None:
    text = format_table(document(), wide=output == "wide")
    assert_golden(f"cli/status-{output}.txt", text)
    # The removed node is shown, with its sessions, and counts neither as up nor in total.
    m3 = next(line for line in text.splitlines() if " m3 " in line)
    assert "DRAIN (removing)" in m3
    assert "cluster-0 (1/2 up)" in text
    assert "conf.d/30-bad.toml: conf.d/30-bad.toml" not in text


def test_yaml_is_the_json_document() -> None:
    doc = document()
    text, code = render(doc, 1, None, "yaml")
    assert code == 1
    assert yaml.safe_load(text) == json.loads(doc.dumps())
    tricky: dict[str, Any] = {"yes": "no", "n": None, "list": [[], {}, [1, "1.0"]],
                              "a b": {"x:y": "#z"}, "e": "", "multi": "a\nb"}
    assert yaml.safe_load(to_yaml(tricky)) == tricky


def test_filter_by_cluster_and_node() -> None:
    doc = document()
    text, code = render(doc, 1, "cluster-0/m1", "json")
    data = json.loads(text)
    assert [n["name"] for n in data["clusters"][0]["nodes"]] == ["m1"] and code == 0
    assert render(doc, 1, "cluster-0/m2", "table")[1] == 2  # its only node is DOWN
    assert render(doc, 1, "cluster-9", "table")[1] == EXIT_NO_SUCH
    assert render(doc, 1, "cluster-0/m9", "table")[1] == EXIT_NO_SUCH


# -- completions and the man page -----------------------------------------------------------
def complete(script: str, *words: str) -> list[str]:
    """COMPREPLY for a command line whose last word is being completed."""
    line = " ".join(f"'{w}'" for w in words)
    program = (f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
               "_haproxy_k8s; printf '%s\\n' \"${COMPREPLY[@]}\"")
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_bash_completion() -> None:
    script = bash(build_parser())
    registered = subprocess.run(
        ["bash", "-c", "source /dev/stdin; complete -p haproxy-k8s"], input=script,
        capture_output=True, text=True, check=True)
    assert registered.stdout.strip() == "complete -F _haproxy_k8s haproxy-k8s"
    assert complete(script, "haproxy-k8s", "sta") == ["status"]
    assert set(complete(script, "haproxy-k8s", "--config-dir", "/tmp", "c")) >= \
        {"check", "cordon", "completion"}
    assert complete(script, "haproxy-k8s", "status", "-o", "") == \
        ["table", "wide", "json", "yaml"]
    assert "--watch" in complete(script, "haproxy-k8s", "status", "--w")
    assert complete(script, "haproxy-k8s", "completion", "") == ["bash", "zsh", "fish"]
    assert "--force" in complete(script, "haproxy-k8s", "maint", "c/n", "--")


def test_zsh_and_fish_completions_parse(tmp_path: Path) -> None:
    parser = build_parser()
    for shell, text, check in (("zsh", zsh(parser), ["-n"]), ("fish", fish(parser), ["-n"])):
        tool = require_tool(shell, f"apt-get install {shell}")
        path = tmp_path / f"completion.{shell}"
        path.write_text(text)
        result = subprocess.run([tool, *check, str(path)], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0, f"{shell}: {result.stderr}"
    fish_tool = shutil.which("fish")
    if fish_tool:  # fish can also say what it would complete
        program = f"source {tmp_path / 'completion.fish'}; complete -C 'haproxy-k8s status -o '"
        out = subprocess.run([fish_tool, "-c", program], capture_output=True, text=True,
                             check=True).stdout.splitlines()
        assert sorted(line.split("\t")[0] for line in out) == ["json", "table", "wide", "yaml"]


def test_man_page(tmp_path: Path) -> None:
    page = man(build_parser(), date="2026-01-01")
    assert_golden("cli/haproxy-k8s.1", page)
    groff = require_tool("groff", "apt-get install groff-base")
    result = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z"], input=page,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    for name in HELP:
        assert f'.SS "{name}' in page

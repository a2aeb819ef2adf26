"""Rough edges an operator met: YAML drop-ins ignored in silence, a missing ca_file
reported against a temporary file, plurals, start-up alerts repeated, the demo banner's
command, a file named twice in an error."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, cli
from helpers import free_port

from haproxy_k8s.demo import run as demo_run

pytestmark = pytest.mark.usefixtures("haproxy_bin")


def one_cluster(root: Path, **kwargs: str) -> ConfigDir:
    config = ConfigDir(root, **kwargs)
    config.cluster("cluster-0", free_port(BALANCER), {"m1": ("127.0.8.10", 6443)})
    return config


def test_check_names_yaml_dropins_and_counts_in_words(short_tmp: Path) -> None:
    config = one_cluster(short_tmp)
    config.write("20-node.yaml", "clusters: {}\n")
    result = cli("check", "--config-dir", str(config.root))
    assert result.returncode == 0, result.stderr
    assert "warning: conf.d/20-node.yaml: ignored: only *.toml and *.json drop-ins are read" \
        in result.stderr
    assert result.stdout.endswith(": OK (1 cluster, 1 node)\n")


def test_check_names_a_missing_ca_file_by_its_key(short_tmp: Path) -> None:
    config = one_cluster(short_tmp)
    config.write("30-tls.toml", '[clusters.cluster-0]\ncheck = "https"\n'
                 'ca_file = "/nonexistent/ca.crt"\n')
    result = cli("check", "--config-dir", str(config.root))
    assert result.returncode == 1
    assert "conf.d/30-tls.toml: clusters.cluster-0.ca_file: /nonexistent/ca.crt: no such file" \
        in result.stderr
    assert "haproxy-k8s-check-" not in result.stderr  # no temporary file in sight


def test_a_start_up_alert_is_said_once_in_our_words(short_tmp: Path, haproxy_bin: str) -> None:
    # A start failure that neither `haproxy -c` nor the bind pre-check catches
    # cannot be made on demand here, so a shim runs the real binary for
    # -c/-vv and, for the start itself, prints what 2.6 prints when a bind
    # fails (seen on 2.6.12) and exits 1.
    shim = short_tmp / "haproxy-shim"
    said = ["[NOTICE]   (7) : haproxy version is 2.6.12",
            "[ALERT]    (7) : Binding [haproxy.cfg:25] for frontend fe_cluster-0: cannot bind "
            "socket (Address already in use) for [127.0.8.1:6443]",
            "[ALERT]    (7) : [haproxy.main()] Some protocols failed to start their "
            "listeners! Exiting."]
    shim.write_text("#!/bin/sh\n"
                    f'for a in "$@"; do case "$a" in -c|-vv) exec {haproxy_bin} "$@";; esac; done\n'
                    + "".join(f"echo '{line}' >&2\n" for line in said) + "exit 1\n")
    shim.chmod(0o755)
    config = one_cluster(short_tmp / "c")
    config.write("05-binary.toml", f'[haproxy]\nbinary = "{shim}"\n')
    result = cli("run", "--config-dir", str(config.root), timeout=60)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    # HAProxy's own line (as it printed it), then our one-line summary; no third copy.
    assert len([line for line in lines if "cannot bind socket" in line]) == 2, result.stderr
    summary = next(line for line in lines if "apply config failed on start" in line)
    assert "[ALERT]" not in summary and "Some protocols failed" not in summary
    # Logged, not printed: under systemd the journal gives it error priority.
    assert lines[-1].endswith(" ERROR haproxy_k8s.cli: HAProxy could not be started; "
                              "the error is logged above"), lines[-1]


def test_errors_name_their_file_once(short_tmp: Path, standin_factory: StandInFactory) -> None:
    m1 = standin_factory("m1", tls=False)
    config = ConfigDir(short_tmp)
    config.cluster("cluster-0", free_port(BALANCER), {"m1": (m1.host, m1.port)})
    daemon = DaemonProcess(config).start()
    try:
        config.write("30-bad.toml", "[clusters.cluster-0.nodes.m9]\nadress = \"127.0.8.10\"\n")
        result = cli("reload", "--config-dir", str(config.root))
        assert result.returncode == 1
        assert result.stderr.count("conf.d/30-bad.toml") == 1, result.stderr
        assert "unknown key 'adress' (did you mean 'address'?)" in result.stderr
        table = cli("status", "--config-dir", str(config.root)).stdout
        error = next(line for line in table.splitlines() if line.startswith("error:"))
        assert error.count("conf.d/30-bad.toml") == 1, error
        assert json.loads(cli("status", "--json", "--config-dir", str(config.root)).stdout
                          )["daemon"]["last_error"]["file"] == "conf.d/30-bad.toml"
    finally:
        daemon.stop()


def test_demo_banner_names_a_command_that_works_outside_the_venv(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv_bin = Path(sys.prefix) / "bin"
    script = venv_bin / "haproxy-k8s"
    if sys.prefix == sys.base_prefix or not script.exists():
        pytest.skip("runs inside the venv the tests install into")
    monkeypatch.setattr(sys, "argv", [str(script)])
    # Inside the activated venv (as scripts/demo runs it): not the bare name.
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}/usr/bin:/bin")
    assert demo_run._cli_command() == str(script)
    # Installed on PATH (the README's symlink): the bare name works everywhere.
    (tmp_path / "haproxy-k8s").symlink_to(script)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{venv_bin}")
    assert demo_run._cli_command() == "haproxy-k8s"

"""Health-check modes for kube-apiservers, against the real HAProxy and TLS stand-ins."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from conftest import StandInFactory
from haproxyutil import cluster, config, running, settings
from helpers import wait_until

from haproxy_k8s.config.model import Bind, CheckKind, Node, StatsSettings
from haproxy_k8s.daemon.health import read_stats
from haproxy_k8s.daemon.inspect import server_line
from haproxy_k8s.daemon.states import check_reason, node_state
from haproxy_k8s.demo.certs import CertBundle, make_certs, make_client_cert
from haproxy_k8s.haproxy.check import check_config, haproxy_version
from haproxy_k8s.haproxy.paths import StatePaths
from haproxy_k8s.haproxy.render import render, server_params

pytestmark = pytest.mark.usefixtures("haproxy_bin")


def test_every_check_mode_against_real_tls(
        haproxy_bin: str, short_tmp: Path, certs: CertBundle,
        standin_factory: StandInFactory, tmp_path: Path) -> None:
    plain = standin_factory("plain", tls=False)
    tls = standin_factory("tls")
    mtls = standin_factory("mtls", require_client_cert=True)  # --anonymous-auth=false
    failing = standin_factory("failing")
    failing.readyz_status = 500
    client = make_client_cert(tmp_path / "client", certs, "system:haproxy-check")
    other_ca = make_certs(tmp_path / "other-ca", ["127.0.8.11"]).ca_file
    ca = str(certs.ca_file)
    # cluster name -> (check settings, node, expected state, expected check status)
    cases = {
        "tcp": (settings(check=CheckKind.TCP), plain, "UP", "L4OK"),
        "tls": (settings(check=CheckKind.TLS), tls, "UP", "L6OK"),
        "tls-on-plain": (settings(check=CheckKind.TLS), plain, "DOWN", "L6RSP"),
        "https": (settings(), tls, "UP", "L7OK/200"),
        "https-on-plain": (settings(), plain, "DOWN", "L6RSP"),
        "https-ca": (settings(ca_file=ca), tls, "UP", "L7OK/200"),
        "https-wrong-ca": (settings(ca_file=str(other_ca)), tls, "DOWN", "L6RSP"),
        "https-no-cert": (settings(ca_file=ca), mtls, "DOWN", "SOCKERR"),
        "https-cert": (settings(ca_file=ca, client_cert=str(client)), mtls, "UP", "L7OK/200"),
        "https-500": (settings(), failing, "DOWN", "L7STS/500"),
        "https-livez": (settings(check_path="/livez"), failing, "UP", "L7OK/200"),
    }
    clusters = [cluster(name, [node], s) for name, (s, node, _, _) in cases.items()]
    expected = {(f"be_{name}", node.name): (state, status)
                for name, (_, node, state, status) in cases.items()}
    with running(config(haproxy_bin, short_tmp / "state", clusters)) as paths:
        def seen() -> dict[tuple[str, str], tuple[str, str]]:
            rows = read_stats(paths.admin_socket)
            return {key: (node_state(rows[key]), check_reason(rows[key])) for key in expected}

        wait_until(lambda: seen() == expected, timeout=5.0,
                   message=f"every check mode gives its expected state {expected}")
    # The https checks really asked for the configured path.
    assert tls.requests["/readyz"] > 0 and mtls.requests["/readyz"] > 0
    assert failing.requests["/livez"] > 0


def test_client_traffic_is_not_terminated(haproxy_bin: str, short_tmp: Path,
                                          standin_factory: StandInFactory,
                                          certs: CertBundle) -> None:
    """check-ssl is for checks only: the client does TLS with the apiserver itself."""
    from helpers import https_get

    node = standin_factory("m1")
    c = cluster("c0", [node])
    with running(config(haproxy_bin, short_tmp / "state", [c])):
        # Verified against the stand-in CA with the balancer's address as the name:
        # only the apiserver's own certificate (SAN 127.0.8.1) can pass this.
        status, _ = https_get(c.binds[0].host, c.binds[0].port, "/version",
                              ca_file=certs.ca_file)
    assert status == 200


@pytest.mark.parametrize(("check", "present", "absent"), [
    ("tcp", [], ["check-ssl", "verify", "crt "]),
    ("tls", ["check-ssl", "verify none"], ["crt "]),
    ("https", ["check-ssl", "verify none"], ["crt "]),
])
def test_server_params_by_mode(check: str, present: list[str], absent: list[str]) -> None:
    params = server_params(settings(check=CheckKind(check)), Node("m1", "127.0.8.10"))
    for word in ["check", "inter 300ms", "fastinter 200ms", "downinter 300ms", "fall 2",
                 "rise 1", "observe layer4 error-limit 2 on-error mark-down", *present]:
        assert word in params
    assert "shutdown-sessions" not in params  # off by default: see ClusterSettings
    for word in absent:
        assert word not in params
    # Client traffic is never TLS-terminated or sent PROXY protocol.
    assert " ssl" not in f" {params}".replace("check-ssl", "") and "send-proxy" not in params


def test_ca_file_and_client_cert_params() -> None:
    params = server_params(settings(ca_file="/etc/k8s/ca.crt", client_cert="/etc/k8s/hc.pem"),
                           Node("m1", "127.0.8.10"))
    assert "ca-file /etc/k8s/ca.crt verify required" in params
    assert "crt /etc/k8s/hc.pem" in params and "verify none" not in params


def test_a_server_runs_what_add_server_would_be_given(short_tmp: Path) -> None:
    """The file splits a server's parameters between its own line and its defaults
    section's `default-server`; `add server` gets them all in one. The two agree."""
    tls = settings(ca_file="/etc/k8s/ca.crt", client_cert="/etc/k8s/hc.pem")
    nodes = (Node("m1", "127.0.8.10", weight=7, backup=True), Node("m2", "api.example"))
    clusters = [dataclasses.replace(cluster(name, [], s), nodes=nodes)
                for name, s in (("c0", settings()), ("c1", tls))]
    text = render(config("haproxy", short_tmp, clusters), drop_privileges=False)
    for c in clusters:
        for node in nodes:
            line = server_line(text, f"be_{c.name}", node.name)
            assert line is not None and " + default-server check " in line, line
            own, inherited = line.split(" + default-server ")
            given = f"{inherited} {own.split(None, 3)[3]}"
            assert given == server_params(c.settings, node), line


def test_backend_carries_the_apiserver_settings(short_tmp: Path) -> None:
    c = cluster("c0", [], settings(check_timeout_ms=3000, retries=4))
    c = dataclasses.replace(c, nodes=(Node("m1", "127.0.8.10"),))
    text = render(config("haproxy", short_tmp, [c]), drop_privileges=False)
    # The option lines are in the named defaults section the backend takes them from.
    defaults = re.search(r"^backend be_c0 from (\S+)$", text, re.M)
    assert defaults is not None
    start = text.index(f"defaults {defaults.group(1)}\n")
    backend = text[start:text.index("\n\n", start)]
    for line in ["balance leastconn", "retries 4", "option redispatch 1", "timeout check 3s",
                 "option httpchk", "http-check send meth GET uri /readyz",
                 "http-check expect status 200", "option srvtcpka", "timeout server-fin 30s"]:
        assert line in backend


def test_prometheus_exporter_detected_and_optional(haproxy_bin: str, short_tmp: Path) -> None:
    stats = StatsSettings(bind=Bind("127.0.8.1", 18404))
    c = dataclasses.replace(cluster("c0", []), nodes=(Node("m1", "127.0.8.10"),))
    cfg = config(haproxy_bin, short_tmp, [c], stats=stats)
    version, promex = haproxy_version(haproxy_bin)
    assert version.startswith("2.") and promex  # Debian's build has +PROMEX
    assert "use-service prometheus-exporter" in render(cfg, drop_privileges=False)
    # Without it the service would be unknown to HAProxy: the line is left out.
    without = render(cfg, drop_privileges=False, promex=False)
    assert "prometheus-exporter" not in without
    paths = StatePaths(short_tmp)
    paths.config.write_text(without)
    check_config(haproxy_bin, paths.config)

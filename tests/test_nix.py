"""The NixOS module (nix/module.nix), evaluated for real with nixpkgs' `lib.evalModules`.

No nixpkgs can be downloaded here: the tests need `nix-instantiate` (Debian's nix-bin) and
nixpkgs' `lib`, found through NIXPKGS_LIB (.ci/run sets it to ../shared/nixpkgs-lib/lib),
else a `shared/nixpkgs-lib/lib` beside the repository, else `<nixpkgs/lib>` on NIX_PATH.
tests/nix/eval.nix declares the few NixOS options the module sets as stubs. Nix runs with
its store and state in a temporary directory: no daemon, nothing written to the host's /nix.

The origin's block below is verbatim from issue 11. Its 192.168.8.x addresses only appear
in evaluated and rendered text; the traffic test uses a loopback variant (127.0.8.x).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, cli
from helpers import free_port, http_get, https_get, require_tool, wait_until
from test_firewall import nft_check, rules

from haproxy_k8s.cli.firewall import render_firewall
from haproxy_k8s.config.loader import load_config
from haproxy_k8s.demo.standin import StandIn
from haproxy_k8s.haproxy.render import render

REPO = Path(__file__).resolve().parent.parent
EVAL_NIX = REPO / "tests" / "nix" / "eval.nix"
GOLDEN = REPO / "tests" / "golden" / "nixos-origin.cfg"
UNIT_FILE = REPO / "units" / "haproxy-k8s.service"
DROP_IN = "haproxy-k8s/conf.d/10-nixos.json"

ORIGIN_BLOCK = """\
services.haproxy-k8s = {
  enable = true;
  frontendPort = 6443;
  bindAddress = "192.168.8.1";
  controlPlaneNodes = [
    { name = "k8s-master-1"; address = "192.168.8.10"; port = 6443; }
    { name = "k8s-master-2"; address = "192.168.8.11"; port = 6443; }
    { name = "k8s-master-3"; address = "192.168.8.12"; port = 6443; }
  ];
  statsPort = 8404;
};
"""

ORIGIN_DROP_IN: dict[str, Any] = {
    "defaults": {"check": "tcp", "connect_timeout": "10s", "retries": 3},
    "stats": {"bind": "192.168.8.1:8404", "allow": ["127.0.0.0/8", "192.168.8.0/24"]},
    "clusters": {"cluster-0": {
        "bind": ["192.168.8.1:6443"],
        "nodes": {f"k8s-master-{i}": {"address": f"192.168.8.{9 + i}", "port": 6443}
                  for i in (1, 2, 3)},
    }},
}


# -- running Nix ----------------------------------------------------------------------
def nixpkgs_lib() -> str:
    """nixpkgs' lib directory: a skip locally when there is none, a failure in CI."""
    if os.environ.get("NIXPKGS_LIB"):
        return os.environ["NIXPKGS_LIB"]
    beside = REPO.parent / "shared" / "nixpkgs-lib" / "lib"
    if beside.is_dir():
        return str(beside)
    found = subprocess.run([nix_instantiate(), "--find-file", "nixpkgs/lib"],
                           capture_output=True, text=True, check=False, timeout=30)
    if found.returncode == 0:
        return found.stdout.strip()
    message = "nixpkgs lib not found (set NIXPKGS_LIB)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: required in CI")
    pytest.skip(message)


def nix_instantiate() -> str:
    return require_tool("nix-instantiate", "apt-get install nix-bin")


@pytest.fixture(scope="session")
def nix_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nix")


def nix_env(home: Path) -> dict[str, str]:
    """A private store and state dir: works without root and without the nix daemon."""
    return {**os.environ, "NIX_REMOTE": f"local?root={home / 'root'}",
            "NIX_STATE_DIR": str(home / "state"), "XDG_CACHE_HOME": str(home / "cache"),
            "NIX_PATH": os.environ.get("NIX_PATH", "")}


def run_eval(block: str, home: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    configuration = tmp_path / "configuration.nix"
    configuration.write_text("{\n" + block + "}\n")
    return subprocess.run(
        [nix_instantiate(), "--eval", "--strict", "--json", str(EVAL_NIX),
         "--argstr", "nixpkgsLib", nixpkgs_lib(), "--argstr", "configuration", str(configuration)],
        capture_output=True, text=True, env=nix_env(home), timeout=120, check=False)


def evaluate(block: str, home: Path, tmp_path: Path) -> dict[str, Any]:
    done = run_eval(block, home, tmp_path)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def drop_in(result: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(result["etc"][DROP_IN])
    return document


def write_config_dir(result: dict[str, Any], root: Path) -> Path:
    (root / "conf.d").mkdir(parents=True, exist_ok=True)
    (root / "conf.d" / "10-nixos.json").write_text(result["etc"][DROP_IN])
    return root


# -- syntax -------------------------------------------------------------------------------
def test_every_nix_file_parses() -> None:
    files = sorted({*REPO.glob("*.nix"), *REPO.glob("nix/*.nix"), *REPO.glob("tests/nix/*.nix")})
    assert {f.name for f in files} >= {"flake.nix", "module.nix", "package.nix", "eval.nix"}
    for file in files:
        done = subprocess.run([nix_instantiate(), "--parse", str(file)], capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{file}: {done.stderr}"


def test_package_has_pyproject_dependencies_and_haproxy_on_path(nix_home: Path) -> None:
    """nix/package.nix called with stand-ins: only pyproject's dependencies exist in them."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = sorted(re.split(r"[<>=!~ ;\[]", dep, maxsplit=1)[0].lower().replace("_", "-")
                   for dep in project["dependencies"])
    stubs = " ".join(f'"{name}" = "py-{name}";' for name in [*names, "hatchling"])
    expression = f"""
      let
        lib = import {nixpkgs_lib()};
        haproxy = {{ type = "derivation"; name = "haproxy"; outPath = "/nix/store/h-haproxy"; }};
        python3Packages = {{ buildPythonApplication = args: args; {stubs} }};
        package = import {REPO / "nix" / "package.nix"} {{ inherit lib haproxy python3Packages; }};
      in {{
        inherit (package) pname version dependencies build-system makeWrapperArgs;
        mainProgram = package.meta.mainProgram;
      }}"""
    done = subprocess.run([nix_instantiate(), "--eval", "--strict", "--json", "--expr",
                           expression], capture_output=True, text=True, env=nix_env(nix_home),
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    package = json.loads(done.stdout)
    assert (package["pname"], package["version"]) == (project["name"], project["version"])
    assert sorted(package["dependencies"]) == [f"py-{name}" for name in names]
    assert package["build-system"] == ["py-hatchling"]
    assert package["makeWrapperArgs"] == ["--prefix", "PATH", ":", "/nix/store/h-haproxy/bin"]
    assert package["mainProgram"] == "haproxy-k8s"


# -- the origin's block, unchanged --------------------------------------------------------
@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory, nix_home: Path) -> dict[str, Any]:
    return evaluate(ORIGIN_BLOCK, nix_home, tmp_path_factory.mktemp("origin"))


def test_origin_block_writes_the_drop_in(origin: dict[str, Any]) -> None:
    assert list(origin["etc"]) == [DROP_IN]
    assert drop_in(origin) == ORIGIN_DROP_IN
    assert origin["failedAssertions"] == []


def test_origin_block_opens_both_ports(origin: dict[str, Any]) -> None:
    assert origin["allowedTCPPorts"] == [6443, 8404]


def _unit_file() -> dict[str, str]:
    """units/haproxy-k8s.service as `Section.Key` -> values joined by spaces."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT_FILE.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(f"{section}.{key}", []).append(value)
    return {key: " ".join(value) for key, value in values.items()}


def _unit_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return " ".join(_unit_value(v) for v in value)
    return str(value)


def test_origin_unit_matches_the_shipped_unit_file(origin: dict[str, Any]) -> None:
    unit = origin["services"]["haproxy-k8s"]
    shipped = _unit_file()
    service = {k.removeprefix("Service."): v for k, v in shipped.items()
               if k.startswith("Service.")}
    module = {key: _unit_value(value) for key, value in unit["serviceConfig"].items()}
    # Only the paths differ: the store path, and `haproxy-k8s reload`, which waits for the
    # apply and reports it, instead of a bare SIGHUP.
    package = "/nix/store/00000000000000000000000000000000-haproxy-k8s-0.1.0"
    assert module.pop("ExecStart") == f"{package}/bin/haproxy-k8s run --config-dir /etc/haproxy-k8s"
    assert module.pop("ExecReload") == (
        f"{package}/bin/haproxy-k8s reload --config-dir /etc/haproxy-k8s")
    del service["ExecStart"], service["ExecReload"]
    assert module == service
    assert unit["conflicts"] == shipped["Unit.Conflicts"].split()
    assert unit["after"] == shipped["Unit.After"].split()
    assert unit["wants"] == shipped["Unit.Wants"].split()
    assert unit["wantedBy"] == shipped["Install.WantedBy"].split()
    assert origin["users"]["haproxy"] == {"isSystemUser": True, "group": "haproxy"}
    assert origin["groups"] == {"haproxy": {}}
    assert origin["systemPackages"] == ["haproxy-k8s-0.1.0"]


def test_a_node_change_reloads_and_never_restarts(origin: dict[str, Any], nix_home: Path,
                                                  tmp_path: Path) -> None:
    """switch-to-configuration reloads a unit whose only change is X-Reload-Triggers."""
    fourth = ORIGIN_BLOCK.replace(
        "  ];", '    { name = "k8s-master-4"; address = "192.168.8.13"; }\n  ];')
    changed = evaluate(fourth, nix_home, tmp_path)
    before, after = origin["services"]["haproxy-k8s"], changed["services"]["haproxy-k8s"]
    assert drop_in(changed)["clusters"]["cluster-0"]["nodes"]["k8s-master-4"] == {
        "address": "192.168.8.13", "port": 6443}
    assert after["reloadTriggers"] != before["reloadTriggers"]
    assert {k: v for k, v in after.items() if k != "reloadTriggers"} == {
        k: v for k, v in before.items() if k != "reloadTriggers"}
    assert (after["reloadIfChanged"], after["stopIfChanged"]) == (False, False)
    # A key the daemon reads only at start does restart it.
    moved = evaluate(ORIGIN_BLOCK + 'services.haproxy-k8s.settings.haproxy.state_dir = '
                     '"/run/haproxy-k8s/other";\n', nix_home, tmp_path / "moved")
    assert moved["services"]["haproxy-k8s"]["restartTriggers"] != before["restartTriggers"]


def test_clusters_settings_and_open_firewall(nix_home: Path, tmp_path: Path) -> None:
    result = evaluate(ORIGIN_BLOCK + textwrap.dedent("""\
        services.haproxy-k8s.openFirewall = false;
        services.haproxy-k8s.clusters.cluster-1 = {
          bind = "192.168.8.1:7443";
          check = "https";
          nodes.k8s-1-master-1.address = "192.168.9.10";
          nodes.k8s-1-master-2 = { address = "192.168.9.11"; port = 16443; weight = 50; };
        };
        services.haproxy-k8s.clusters.cluster-0.nodes.k8s-master-3.enabled = false;
        services.haproxy-k8s.settings = {
          defaults.check = "https";
          stats.allow = [ "10.0.0.0/8" ];
          metrics.bind = "";
        };
        """), nix_home, tmp_path)
    document = drop_in(result)
    assert document["defaults"] == {"check": "https", "connect_timeout": "10s", "retries": 3}
    assert document["stats"] == {"bind": "192.168.8.1:8404", "allow": ["10.0.0.0/8"]}
    assert document["metrics"] == {"bind": ""}
    assert document["clusters"]["cluster-1"] == {
        "bind": "192.168.8.1:7443", "check": "https", "nodes": {
            "k8s-1-master-1": {"address": "192.168.9.10"},
            "k8s-1-master-2": {"address": "192.168.9.11", "port": 16443, "weight": 50}}}
    assert document["clusters"]["cluster-0"]["nodes"]["k8s-master-3"] == {
        "address": "192.168.8.12", "port": 6443, "enabled": False}
    assert result["allowedTCPPorts"] == []
    config = load_config(write_config_dir(result, tmp_path / "config"))
    assert [c.name for c in config.clusters] == ["cluster-0", "cluster-1"]
    assert [n.name for n in config.clusters[0].nodes] == ["k8s-master-1", "k8s-master-2"]


def test_firewall_opens_every_bind_port(nix_home: Path, tmp_path: Path) -> None:
    result = evaluate(ORIGIN_BLOCK + 'services.haproxy-k8s.clusters.cluster-1 = '
                      '{ bind = [ "192.168.8.1:7443" ]; nodes.m1.address = "192.168.9.10"; };\n',
                      nix_home, tmp_path)
    assert result["allowedTCPPorts"] == [6443, 7443, 8404]


def test_disabled_module_sets_nothing(nix_home: Path, tmp_path: Path) -> None:
    result = evaluate(ORIGIN_BLOCK.replace("enable = true", "enable = false"), nix_home, tmp_path)
    assert (result["etc"], result["allowedTCPPorts"], result["services"],
            result["systemPackages"]) == ({}, [], {}, [])


@pytest.mark.parametrize(("mistake", "old", "new", "option", "why"), [
    ("duplicate node names", 'name = "k8s-master-2"', 'name = "k8s-master-1"',
     "services.haproxy-k8s.controlPlaneNodes", "node names must be unique; defined more than "
     "once: k8s-master-1"),
    ("port 70000", '"192.168.8.11"; port = 6443', '"192.168.8.11"; port = 70000',
     "services.haproxy-k8s.controlPlaneNodes.\"[definition 1-entry 2]\".port",
     "is not of type `TCP port (1-65535)'"),
    ("empty address", 'address = "192.168.8.12"', 'address = ""',
     "services.haproxy-k8s.controlPlaneNodes.\"[definition 1-entry 3]\".address",
     "is not of type `non-empty string'"),
    ("empty bind address", 'bindAddress = "192.168.8.1"', 'bindAddress = ""',
     "services.haproxy-k8s.bindAddress", "is not of type `IPv4 or IPv6 address literal'"),
    ("node name with a space", 'name = "k8s-master-1"', 'name = "k8s master 1"',
     "services.haproxy-k8s.controlPlaneNodes.\"[definition 1-entry 1]\".name",
     "is not of type `node name"),
    ("stats port 0", "statsPort = 8404", "statsPort = 0", "services.haproxy-k8s.statsPort",
     "is not of type `TCP port (1-65535)'"),
])
def test_a_broken_block_fails_evaluation_naming_the_option(
        mistake: str, old: str, new: str, option: str, why: str, nix_home: Path,
        tmp_path: Path) -> None:
    assert old in ORIGIN_BLOCK, mistake
    done = run_eval(ORIGIN_BLOCK.replace(old, new), nix_home, tmp_path)
    assert done.returncode != 0, f"{mistake}: evaluated: {done.stdout[:200]}"
    assert option in done.stderr and why in done.stderr, done.stderr


def test_no_cluster_at_all_is_an_evaluation_error(nix_home: Path, tmp_path: Path) -> None:
    block = ORIGIN_BLOCK.split("  controlPlaneNodes")[0] + "};\n"
    done = run_eval(block, nix_home, tmp_path)
    assert done.returncode != 0
    assert "services.haproxy-k8s: no cluster" in done.stderr, done.stderr


# -- the drop-in through haproxy-k8s --------------------------------------------------------
def test_origin_drop_in_passes_check_and_renders_the_golden_config(
        origin: dict[str, Any], haproxy_bin: str, tmp_path: Path) -> None:
    config_dir = write_config_dir(origin, tmp_path / "config")
    path = f"{os.path.dirname(haproxy_bin)}{os.pathsep}{os.environ.get('PATH', '')}"
    # --no-bind-check: the origin binds 192.168.8.1, an address of the router, not of this host.
    done = cli("check", "--no-bind-check", "--config-dir", str(config_dir), PATH=path)
    assert done.returncode == 0, done.stderr
    assert "OK (1 cluster, 3 nodes)" in done.stdout
    rendered = cli("render", "--config-dir", str(config_dir))
    assert rendered.returncode == 0, rendered.stderr
    config = load_config(config_dir)
    assert rendered.stdout == render(config)
    # As tests/test_examples.py: independent of who runs the tests and of the build.
    text = render(config, drop_privileges=False, promex=True)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), (
        f"rendered drop-in differs from {GOLDEN}; if intended, regenerate with "
        "UPDATE_GOLDEN=1 and review the diff")


def test_firewall_command_agrees_with_open_firewall(origin: dict[str, Any],
                                                    tmp_path: Path) -> None:
    ruleset = render_firewall(load_config(write_config_dir(origin, tmp_path / "config")))
    ports = sorted({int(rule.split("tcp dport ")[1].split()[0]) for rule in rules(ruleset)})
    assert ports == origin["allowedTCPPorts"]
    nft_check(ruleset, tmp_path)


# -- the loopback variant, served for real ------------------------------------------------
def loopback_block(nodes: list[StandIn], port: int, stats_port: int, config: ConfigDir) -> str:
    entries = "\n".join(f'    {{ name = "k8s-master-{i}"; address = "{n.host}"; port = {n.port}; }}'
                        for i, n in enumerate(nodes, 1))
    return textwrap.dedent(f"""\
        services.haproxy-k8s = {{
          enable = true;
          frontendPort = {port};
          bindAddress = "{BALANCER}";
          controlPlaneNodes = [
        {entries}
          ];
          statsPort = {stats_port};
          settings = {{
            haproxy.state_dir = "{config.state_dir}";
            metrics.bind = "{BALANCER}:{config.metrics_port}";
            defaults = {{ check_interval = "500ms"; fall = 2; rise = 1; slowstart = "0s"; }};
          }};
        }};
        """)


def publish(root: Path, generation: int, text: str) -> None:
    """What `nixos-rebuild switch` does to /etc: conf.d/10-nixos.json is a symlink into
    /etc/static, and the switch swaps /etc/static for the new generation atomically. The
    file in conf.d never changes, so only the unit's reload tells the daemon."""
    generation_dir = root / f"generation-{generation}" / "haproxy-k8s" / "conf.d"
    generation_dir.mkdir(parents=True)
    (generation_dir / "10-nixos.json").write_text(text)
    (root / "static.new").symlink_to(f"generation-{generation}")
    os.replace(root / "static.new", root / "static")
    link = root / "conf.d" / "10-nixos.json"
    if not link.is_symlink():
        link.symlink_to(root / "static" / "haproxy-k8s" / "conf.d" / "10-nixos.json")


@pytest.fixture
def loopback(short_tmp: Path, standin_factory: StandInFactory, nix_home: Path, tmp_path: Path,
             haproxy_bin: str) -> Iterator[tuple[ConfigDir, DaemonProcess, int, list[StandIn]]]:
    config = ConfigDir(short_tmp)
    (config.root / "haproxy-k8s.toml").unlink()  # the drop-in is the whole configuration
    nodes = [standin_factory(f"k8s-master-{i}") for i in (1, 2, 3)]
    port = free_port(BALANCER)
    result = evaluate(loopback_block(nodes, port, config.stats_port, config), nix_home, tmp_path)
    publish(config.root, 1, result["etc"][DROP_IN])
    path = f"{os.path.dirname(haproxy_bin)}{os.pathsep}{os.environ.get('PATH', '')}"
    daemon = DaemonProcess(config, PATH=path)
    try:
        daemon.start()
        yield config, daemon, port, nodes
    finally:
        daemon.stop()


def node_of(port: int) -> str:
    status, body = https_get(BALANCER, port, "/version")
    assert status == 200
    return str(json.loads(body)["node"])


def test_loopback_variant_serves_and_a_switch_adds_a_node_without_restart(
        loopback: tuple[ConfigDir, DaemonProcess, int, list[StandIn]],
        standin_factory: StandInFactory, nix_home: Path, tmp_path: Path) -> None:
    config, daemon, port, nodes = loopback
    wait_until(lambda: {node_of(port) for _ in range(12)} == {n.name for n in nodes},
               timeout=10.0, message="all three nodes serve through the balancer")
    status, body = http_get(BALANCER, config.stats_port, "/stats;csv")
    assert status == 200 and b"be_cluster-0" in body
    haproxy = daemon.haproxy_pid

    fourth = standin_factory("k8s-master-4")
    result = evaluate(loopback_block([*nodes, fourth], port, config.stats_port, config),
                      nix_home, tmp_path / "switch")
    publish(config.root, 2, result["etc"][DROP_IN])
    # The unit's ExecReload, as `nixos-rebuild switch` runs it for a changed reloadTrigger.
    done = cli("reload", "--config-dir", str(config.root), timeout=30)
    assert done.returncode == 0, done.stderr
    # Through the runtime API: not even a HAProxy reload.
    assert done.stdout.startswith("applied: runtime "), done.stdout
    wait_until(lambda: "k8s-master-4" in {node_of(port) for _ in range(12)}, timeout=5.0,
               message="the node added by the switch gets traffic")
    assert daemon.haproxy_pid == haproxy, "HAProxy was restarted for a node change"

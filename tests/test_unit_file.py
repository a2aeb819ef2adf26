"""units/haproxy-k8s.service: systemd accepts it, and its sandbox stays tight.

No systemd runs as PID 1 in CI, so the unit is checked offline with systemd-analyze:
`security --offline=true` for the exposure score, `verify` for directives systemd rejects.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import require_tool

UNIT = Path(__file__).resolve().parent.parent / "units" / "haproxy-k8s.service"
UNIT_NAME = UNIT.name
MAX_EXPOSURE = 2.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    """Path of systemd-analyze: a skip locally when missing, a failure in CI."""
    return require_tool("systemd-analyze", "apt-get install systemd")


def analyze(binary: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=env, check=False)


def service_section(text: str) -> dict[str, list[str]]:
    """The [Service] assignments of a unit file, in order (a key may repeat)."""
    section = ""
    values: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def our_complaints(binary: str, unit: Path) -> list[str]:
    """What `systemd-analyze verify` says about this unit (not about the host's other units)."""
    result = analyze(binary, "verify", unit.name, cwd=unit.parent)
    output = ANSI.sub("", result.stdout + result.stderr).splitlines()
    complaints = [line for line in output if UNIT_NAME in line]
    if result.returncode != 0 and not complaints:
        complaints = [f"exit code {result.returncode}", *output]
    return complaints


def verifiable_copy(directory: Path, extra: str = "") -> Path:
    """The unit with ExecStart=/ExecReload= on a binary that exists here (verify checks that)."""
    true = shutil.which("true") or "/bin/true"
    text = re.sub(r"(?m)^(Exec(?:Start|Reload))=\S+", rf"\1={true}", UNIT.read_text())
    text = text.replace("[Service]\n", f"[Service]\n{extra}", 1)
    copy = directory / UNIT_NAME
    copy.write_text(text)
    return copy


def test_security_exposure_within_budget(systemd_analyze: str) -> None:
    result = analyze(systemd_analyze, "security", "--offline=true", str(UNIT))
    output = ANSI.sub("", result.stdout + result.stderr)
    match = re.search(rf"Overall exposure level for {re.escape(UNIT_NAME)}: (\d+\.\d)", output)
    assert match, output
    assert float(match.group(1)) <= MAX_EXPOSURE, output


def test_verify_has_no_complaints_about_the_unit(systemd_analyze: str, tmp_path: Path) -> None:
    assert our_complaints(systemd_analyze, verifiable_copy(tmp_path)) == []


def test_verify_check_catches_a_bad_directive(systemd_analyze: str, tmp_path: Path) -> None:
    # Guards the test above: a typo'd directive must show up as a complaint.
    copy = verifiable_copy(tmp_path, extra="ProtectSytem=strict\n")
    assert any("ProtectSytem" in line for line in our_complaints(systemd_analyze, copy))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),
        ("ExecStart", "/usr/local/bin/haproxy-k8s run"),
        # Waits for the apply and fails with it; needs no /bin/kill.
        ("ExecReload", "/usr/local/bin/haproxy-k8s reload"),
        # HAProxy must survive a crash or restart of the daemon, which then adopts it.
        ("KillMode", "process"),
        ("Restart", "on-failure"),
        # A config error at start (EX_CONFIG) stops the unit instead of a restart loop.
        ("RestartPreventExitStatus", "78"),
        ("WatchdogSec", "30s"),
        ("RuntimeDirectory", "haproxy-k8s"),
        ("RuntimeDirectoryPreserve", "yes"),
        ("StateDirectory", "haproxy-k8s"),
        ("ConfigurationDirectory", "haproxy-k8s"),
        ("User", "haproxy"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("MemoryDenyWriteExecute", "yes"),
        ("UMask", "0027"),
    ],
)
def test_service_directive(key: str, value: str) -> None:
    assert service_section(UNIT.read_text()).get(key) == [value]


def test_unit_section_conflicts_with_debian_haproxy() -> None:
    text = UNIT.read_text()
    unit = text[text.index("[Unit]"):text.index("[Service]")]
    assert re.search(r"(?m)^Conflicts=haproxy\.service$", unit)
    assert re.search(r"(?m)^After=network-online\.target$", unit)
    assert re.search(r"(?m)^Wants=network-online\.target$", unit)


KEEPALIVED_UNITS = ("haproxy-k8s-keepalived.service", "haproxy-k8s-keepalived.path",
                    "haproxy-k8s-keepalived-reload.service")


def test_keepalived_units_verify_cleanly(systemd_analyze: str, tmp_path: Path) -> None:
    # Exec*= binaries must exist for verify: point them at `true` in a copy.
    true = shutil.which("true") or "/bin/true"
    for name in KEEPALIVED_UNITS:
        text = (UNIT.parent / name).read_text()
        text = re.sub(r"(?m)^(Exec(?:Start|StartPre|Reload)=-?)\S+", rf"\g<1>{true}", text)
        (tmp_path / name).write_text(text)
    result = analyze(systemd_analyze, "verify", *KEEPALIVED_UNITS, cwd=tmp_path)
    output = ANSI.sub("", result.stdout + result.stderr).splitlines()
    assert [line for line in output if "haproxy-k8s" in line] == [], output


def test_keepalived_unit_has_the_network_privileges_ours_lacks() -> None:
    ours = service_section(UNIT.read_text())
    theirs = service_section((UNIT.parent / KEEPALIVED_UNITS[0]).read_text())
    assert "CAP_NET_ADMIN" in theirs["CapabilityBoundingSet"][0]
    assert "CAP_NET_RAW" in theirs["CapabilityBoundingSet"][0]
    assert "AF_NETLINK" in theirs["RestrictAddressFamilies"][0]
    assert ours["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert "AF_NETLINK" not in ours["RestrictAddressFamilies"][0]


def test_keepalived_unit_tests_what_it_runs_and_owns_its_files() -> None:
    theirs = service_section((UNIT.parent / KEEPALIVED_UNITS[0]).read_text())
    # The full config test (interfaces visible) before start and as the reload; no /bin/kill.
    assert any("keepalived-install" in line for line in theirs["ExecStartPre"])
    assert theirs["ExecReload"] == [
        "/usr/local/bin/haproxy-k8s keepalived-install --state-dir /run/haproxy-k8s "
        "--keepalived /usr/sbin/keepalived --hup $MAINPID"]
    # Reads the daemon's 0750 state dir through the group, writes only its own dir.
    assert theirs["Group"] == ["haproxy"]
    assert theirs["RuntimeDirectory"] == ["haproxy-k8s-keepalived"]
    assert "ReadWritePaths" not in theirs
    assert "/run/haproxy-k8s-keepalived/keepalived.conf" in theirs["ExecStart"][0]

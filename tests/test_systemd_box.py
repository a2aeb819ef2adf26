"""units/haproxy-k8s.service under a real systemd 252, in a container (tests/systemd_box.py).

One container per session, shared by these tests in file order; each test starts from the
`service` fixture's baseline (three stand-ins up, no test drop-ins, the unit active). Every
request goes to 127.0.8.x inside the container's own network namespace.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from helpers import wait_until
from systemd_box import (
    API_PORT,
    BALANCER,
    METRICS_PORT,
    NODES,
    STATE_DIR,
    STATS_PORT,
    UNIT,
    WATCHDOG_SEC,
    Box,
    bumped_wheel,
)

pytestmark = pytest.mark.slow
CONF_D = "/etc/haproxy-k8s/conf.d"
TEST_DROP_IN = "90-test.toml"
ERR, WARNING = 3, 4  # syslog priorities


@pytest.fixture
def service(box: Box) -> Box:
    """The baseline: every stand-in up, only the cluster drop-in, the unit active."""
    (box.root / CONF_D.lstrip("/") / TEST_DROP_IN).unlink(missing_ok=True)
    box.check("systemctl", "start", *(f"standin@{host}" for host in NODES))
    if box.show("ActiveState") != "active":
        box.run("systemctl", "reset-failed", UNIT)
        box.check("systemctl", "start", UNIT)
    else:
        box.check("haproxy-k8s", "reload")
    wait_until(lambda: all_up(box), 15.0, interval=0.2, message="every node UP")
    return box


def all_up(box: Box) -> bool:
    return all(node["state"] == "UP"
               for cluster in box.status()["clusters"] for node in cluster["nodes"])


def probe(box: Box) -> dict[str, Any]:
    """One try (no retry) at each endpoint, from inside: status code or error per URL."""
    script = f"""
import json, ssl, urllib.request
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
urls = ["https://{BALANCER}:{API_PORT}/version", "http://{BALANCER}:{STATS_PORT}/stats",
        "http://{BALANCER}:{STATS_PORT}/metrics", "http://{BALANCER}:{METRICS_PORT}/metrics"]
out = {{}}
for url in urls:
    try:
        out[url] = urllib.request.urlopen(url, timeout=3, context=context).status
    except Exception as e:
        out[url] = repr(e)
print(json.dumps(out))
"""
    result: dict[str, Any] = json.loads(box.check("python3", "-c", script))
    return result


def master_pid(box: Box) -> int:
    return int(box.check("cat", f"{STATE_DIR}/haproxy.pid"))


def seconds(span: str) -> float:
    """A systemd time span as `systemctl show` prints it ("1min 30s", "90s") in seconds."""
    units = {"min": 60.0, "ms": 0.001, "s": 1.0, "h": 3600.0}
    total = 0.0
    for part in span.split():
        unit = next(u for u in units if part.endswith(u))
        total += float(part.removesuffix(unit)) * units[unit]
    return total


def restarted(box: Box, old_pid: str) -> bool:
    pid = box.show("MainPID")
    return pid not in ("0", old_pid) and box.show("ActiveState") == "active"


def logged(box: Box, cursor: str, priority: int = 7) -> list[str]:
    """Journal lines after `cursor`, once there are any: journald takes the daemon's stderr
    asynchronously, so a line may land after the state change it reports."""
    lines: list[str] = wait_until(lambda: box.journal(cursor, priority), 10.0, interval=0.2,
                                  message=f"journal lines at priority <= {priority}")
    return lines


def assert_no_loss(report: dict[str, Any]) -> None:
    assert report["failed"] == 0, report
    assert report["ok"] > 0, report


# -- start ------------------------------------------------------------------------------------
def test_start_returns_when_every_endpoint_answers(box: Box) -> None:
    box.run("systemctl", "stop", UNIT)
    started = time.monotonic()
    box.check("systemctl", "start", UNIT)
    took = time.monotonic() - started
    # Right after `systemctl start` returns, with no retry: Type=notify promises this.
    answers = probe(box)
    assert all(code == 200 for code in answers.values()), answers
    status = box.check("systemctl", "status", "--no-pager", UNIT)
    assert 'Status: "cluster-0: ' in status and "generation 1" in status, status
    assert took < 10, took


def test_state_dir_is_private(service: Box) -> None:
    listing = service.check("stat", "-c", "%a %F %n", STATE_DIR,
                            *(f"{STATE_DIR}/{name}" for name in
                              ("status.json", "daemon.pid", "haproxy.cfg", "haproxy.pid")))
    modes = dict(line.split(" ", 1)[::-1] for line in listing.splitlines())
    assert modes.pop(f"directory {STATE_DIR}") == "750", listing
    assert set(modes.values()) == {"640"}, listing
    world = service.check("find", STATE_DIR, "-perm", "/o=rwx")
    assert world == "", world


# -- reload -----------------------------------------------------------------------------------
def test_systemctl_reload_applies_a_drop_in(service: Box) -> None:
    before = service.status()["daemon"]["generation"]
    service.write(f"{CONF_D}/{TEST_DROP_IN}",
                  f'[clusters.cluster-0.nodes.m4]\naddress = "{NODES[0]}"\nport = {API_PORT}\n')
    service.check("systemctl", "reload", UNIT)
    doc = service.status()
    assert doc["daemon"]["generation"] > before, doc["daemon"]
    assert "m4" in {node["name"] for node in doc["clusters"][0]["nodes"]}


def test_systemctl_reload_fails_on_a_broken_drop_in(service: Box) -> None:
    cursor = service.cursor()
    service.write(f"{CONF_D}/{TEST_DROP_IN}",
                  f'[clusters.cluster-0.nodes.m4]\naddress = "{NODES[0]}"\nprot = 1\n')
    with service.client_loop() as report:
        result = service.run("systemctl", "reload", UNIT)
    assert result.returncode != 0, result
    assert "failed" in result.stderr, result.stderr
    lines = logged(service, cursor)
    message = [line for line in lines if line.startswith("haproxy-k8s: apply failed")]
    assert message and TEST_DROP_IN in message[0] and "prot" in message[0], lines
    assert service.show("ActiveState") == "active"
    assert_no_loss(report)  # the old config kept serving
    assert probe(service)[f"https://{BALANCER}:{API_PORT}/version"] == 200


# -- the journal ----------------------------------------------------------------------------
def test_failed_apply_is_one_error_line_with_file_and_key(service: Box) -> None:
    cursor = service.cursor()
    service.write(f"{CONF_D}/{TEST_DROP_IN}", "[clusters.cluster-0]\nbalance = \"fastest\"\n")
    wait_until(lambda: service.status()["daemon"]["last_error"], 10.0, message="apply error")
    errors = logged(service, cursor, ERR)
    assert len(errors) == 1, errors
    assert TEST_DROP_IN in errors[0] and "clusters.cluster-0.balance" in errors[0], errors


def test_node_down_is_one_warning_line(service: Box) -> None:
    cursor = service.cursor()
    service.check("systemctl", "stop", f"standin@{NODES[1]}")

    def m2_down() -> bool:
        nodes = service.status()["clusters"][0]["nodes"]
        return any(node["name"] == "m2" and node["state"] == "DOWN" for node in nodes)

    wait_until(m2_down, 15.0, interval=0.2, message="m2 DOWN")
    # HAProxy's state (read live by `status`) leads the daemon's poller by up to a round.
    warnings = logged(service, cursor, WARNING)
    assert len(warnings) == 1, warnings
    assert "cluster-0/m2" in warnings[0] and "DOWN" in warnings[0], warnings


# -- crash and wedge --------------------------------------------------------------------------
def test_sigkill_restarts_the_daemon_which_adopts_haproxy(service: Box) -> None:
    old_pid, master = service.show("MainPID"), master_pid(service)
    with service.client_loop() as report:
        service.check("systemctl", "kill", "--kill-who=main", "-s", "KILL", UNIT)
        wait_until(lambda: restarted(service, old_pid), 20.0, interval=0.2,
                   message="a new daemon")
    assert_no_loss(report)
    assert master_pid(service) == master
    assert service.status()["haproxy"]["pid"] == master


def test_watchdog_restarts_a_wedged_daemon(service: Box) -> None:
    old_pid, master = service.show("MainPID"), master_pid(service)
    cursor = service.cursor()
    with service.client_loop() as report:
        service.check("systemctl", "kill", "--kill-who=main", "-s", "STOP", UNIT)
        wait_until(lambda: restarted(service, old_pid), WATCHDOG_SEC + 20.0, interval=0.5,
                   message="the watchdog's restart")
    assert_no_loss(report)
    assert any("Watchdog timeout" in line for line in service.journal(cursor))
    assert master_pid(service) == master


# -- upgrade ----------------------------------------------------------------------------------
def test_upgrade_replaces_the_daemon_while_haproxy_serves(service: Box) -> None:
    version = "0.1.0+box2"
    wheel = bumped_wheel(service.root / "wheels-upgrade", version)
    pid, master = service.show("MainPID"), master_pid(service)
    restarts = service.show("NRestarts")
    with service.client_loop() as report:
        service.check("/opt/haproxy-k8s/bin/pip", "install", "-q", "--no-index", "--no-deps",
                      "--force-reinstall", f"/wheels-upgrade/{wheel.name}", timeout=120)
        out = service.check("haproxy-k8s", "restart-daemon")
    assert "same master" in out, out
    assert_no_loss(report)
    assert service.check("haproxy-k8s", "--version").strip() == f"haproxy-k8s {version}"
    doc = service.status()
    assert doc["daemon"]["version"] == version
    assert doc["haproxy"]["pid"] == master == master_pid(service)
    # Same process for systemd: no restart, no failure.
    assert (service.show("MainPID"), service.show("NRestarts")) == (pid, restarts)
    assert service.show("ActiveState") == "active"


# -- hardening ----------------------------------------------------------------------------
def test_state_dir_outside_writable_paths_is_a_clear_error(service: Box) -> None:
    cursor = service.cursor()
    service.write(f"{CONF_D}/{TEST_DROP_IN}", '[haproxy]\nstate_dir = "/srv/haproxy-k8s"\n')
    # While running: refused, HAProxy keeps serving on the old state dir.
    saved = f"{STATE_DIR}/status.json"
    wait_until(lambda: json.loads(service.check("cat", saved))["daemon"]["last_error"], 10.0)
    error = json.loads(service.check("cat", saved))["daemon"]["last_error"]
    assert "haproxy.state_dir" in error["message"], error
    assert any("haproxy.state_dir" in line for line in logged(service, cursor, ERR))
    # At a start: one clear failure, no restart loop.
    result = service.run("systemctl", "restart", UNIT)
    assert result.returncode != 0
    wait_until(lambda: service.show("ActiveState") == "failed", 10.0, interval=0.2)
    assert service.show("NRestarts") == "0"
    lines = service.journal(cursor, ERR)
    assert any("/srv/haproxy-k8s" in line and "haproxy.state_dir" in line for line in lines)
    status = service.run("haproxy-k8s", "status")
    assert status.returncode == 3 and "/srv/haproxy-k8s" in status.stdout, status


# -- stop -------------------------------------------------------------------------------------
def test_stop_ends_haproxy_gracefully_and_leaves_nothing(service: Box) -> None:
    limit = seconds(service.show("TimeoutStopUSec"))
    started = time.monotonic()
    service.check("systemctl", "stop", UNIT, timeout=120)
    took = time.monotonic() - started
    assert 0 < took < limit, (took, limit)
    assert service.show("Result") == "success"
    assert service.run("pgrep", "-u", "haproxy").stdout == ""
    assert service.show("MainPID") == "0"
    world = service.check("find", STATE_DIR, "-perm", "/o=rwx")
    assert world == "", world

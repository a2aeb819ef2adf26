"""The stats password: read from its file on every apply, handed to HAProxy in a second
config file (never haproxy.cfg, never the environment), rotated by a seamless reload."""

from __future__ import annotations

import base64
import dataclasses
import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import StandInFactory
from daemonutil import BALANCER, ConfigDir, DaemonProcess, cli
from helpers import free_port, version_over_tls, wait_until

from haproxy_k8s.config.model import Bind, Cluster, Config, Node, StatsSettings
from haproxy_k8s.errors import ConfigError, ValidationError
from haproxy_k8s.haproxy.check import check_config
from haproxy_k8s.haproxy.paths import StatePaths
from haproxy_k8s.haproxy.render import render
from haproxy_k8s.haproxy.secrets import read_password, render_auth
from testkit.load import Load

ODD = "a b\"c$d#e\\f'g:h"  # every character HAProxy's config parser treats specially


def config_with(password_file: Path, port: int = 18404) -> Config:
    return Config(stats=StatsSettings(bind=Bind(BALANCER, port), user="admin",
                                      password_file=str(password_file)),
                  clusters=(Cluster("c0", (Bind(BALANCER, 16443),),
                                    (Node("m1", "127.0.8.10"),)),))


def stats_status(port: int, password: str | None, path: str = "/stats") -> int:
    conn = http.client.HTTPConnection(BALANCER, port, timeout=2.0)
    headers = {"Connection": "close"}
    if password is not None:
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        conn.request("GET", path, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def test_password_is_read_and_quoted(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(ODD + "\n")
    assert read_password(str(tmp_path / "pw"), "stats.password_file") == ODD
    assert "user admin insecure-password 'a b\"c$d#e\\f'\\''g:h'" in render_auth(
        config_with(tmp_path / "pw"))


@pytest.mark.parametrize(("content", "message"), [
    ("", "the password file is empty"), ("  \n", "the password file is empty"),
    ("two\nlines", "one line"), ("x" * 5000, "larger than")])
def test_bad_password_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "pw").write_text(content)
    with pytest.raises(ConfigError, match=rf"stats\.password_file: .*{message}") as e:
        render_auth(config_with(tmp_path / "pw"))
    assert e.value.file == str(tmp_path / "pw")


def test_missing_password_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the password file"):
        render_auth(config_with(tmp_path / "nope"))


def test_password_never_rendered_and_required_by_haproxy(haproxy_bin: str,
                                                         short_tmp: Path) -> None:
    (short_tmp / "pw").write_text(ODD)
    config = config_with(short_tmp / "pw")
    config = dataclasses.replace(config, haproxy=dataclasses.replace(
        config.haproxy, binary=haproxy_bin, state_dir=str(short_tmp)))
    paths = StatePaths(short_tmp)
    paths.config.write_text(render(config, paths, drop_privileges=False))
    assert ODD not in paths.config.read_text()
    # Without the userlist file HAProxy refuses the config: never an open stats page.
    with pytest.raises(ValidationError, match="haproxy_k8s_stats"):
        check_config(haproxy_bin, paths.config)
    paths.stats_auth.write_text(render_auth(config))
    check_config(haproxy_bin, paths.config, also=[paths.stats_auth])


@pytest.fixture
def guarded(short_tmp: Path,
            standin_factory: StandInFactory) -> Iterator[tuple[ConfigDir, DaemonProcess, int]]:
    nodes = [standin_factory(f"m{i}") for i in (1, 2)]
    pw = short_tmp / "stats.pw"
    pw.write_text("first-pw-3k9q\n")
    config = ConfigDir(short_tmp / "etc", check="https")
    config.write("05-stats.toml", f'[stats]\nuser = "admin"\npassword_file = "{pw}"\n')
    port = free_port(BALANCER)
    config.cluster("cluster-0", port, {n.name: (n.host, n.port) for n in nodes})
    daemon = DaemonProcess(config).start()
    try:
        yield config, daemon, port
    finally:
        daemon.stop()


def test_rotation_under_load_and_bad_file_keeps_last_good(
        guarded: tuple[ConfigDir, DaemonProcess, int], short_tmp: Path) -> None:
    config, daemon, port = guarded
    stats, pw = config.stats_port, short_tmp / "stats.pw"
    assert stats_status(stats, None) == 401
    assert stats_status(stats, "first-pw-3k9q") == 200
    assert stats_status(stats, None, "/metrics") == 401  # the exporter is guarded too
    assert stats_status(stats, "first-pw-3k9q", "/metrics") == 200
    assert "first-pw-3k9q" not in (config.state_dir / "haproxy.cfg").read_text()
    reloads = daemon.status()["haproxy"]["reloads"]
    with Load(version_over_tls(port)) as load:
        load.wait_requests(20)
        pw.write_text(ODD + "\n")  # outside the config dir: the daemon's tick notices
        wait_until(lambda: stats_status(stats, ODD) == 200, 10.0,
                   message="the new password is accepted")
        assert stats_status(stats, "first-pw-3k9q") == 401
        load.wait_requests(load.result.ok + 40)
        # Unreadable (gone) and then empty: refused, the current password keeps working.
        pw.unlink()
        error = wait_until(lambda: daemon.status()["daemon"]["last_error"], 10.0)
        assert error["file"] == str(pw)
        assert "stats.password_file: cannot read the password file" in error["message"]
        pw.write_text("")
        wait_until(lambda: "empty" in str(daemon.status()["daemon"]["last_error"]), 10.0)
        assert stats_status(stats, ODD) == 200
        load.wait_requests(load.result.ok + 40)
    result = load.stop()
    assert result.failures == [], result.failures[:5]
    assert daemon.status()["haproxy"]["reloads"] == reloads + 1
    assert daemon.status()["haproxy"]["failed_reloads"] == 0
    check = cli("check", "--config-dir", str(config.root))
    assert check.returncode == 1 and "the password file is empty" in check.stderr
    # The next start (HAProxy stopped too) serves the last good config, not a crash loop.
    daemon.stop()
    daemon.start()
    assert stats_status(stats, ODD) == 200
    assert "empty" in daemon.status()["daemon"]["last_error"]["message"]
    pw.write_text("third\n")
    wait_until(lambda: stats_status(stats, "third") == 200, 10.0)
    wait_until(lambda: daemon.status()["daemon"]["last_error"] is None, 5.0)

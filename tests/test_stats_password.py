"""The stats password reaches HAProxy only through its environment, never empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from haproxy_k8s.apply.candidate import haproxy_env
from haproxy_k8s.config.model import Config, StatsSettings
from haproxy_k8s.errors import ConfigError
from haproxy_k8s.haproxy.render import STATS_PASSWORD_ENV


def config_with(password_file: Path) -> Config:
    return Config(stats=StatsSettings(user="admin", password_file=str(password_file)))


def test_password_is_read_into_the_environment(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    assert haproxy_env(config_with(tmp_path / "pw"))[STATS_PASSWORD_ENV] == "s3cret"


@pytest.mark.parametrize("content", ["", "  \n"])
def test_empty_password_file_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "pw").write_text(content)
    with pytest.raises(ConfigError, match=r"stats\.password_file: the password file is empty"):
        haproxy_env(config_with(tmp_path / "pw"))


def test_missing_password_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the password file"):
        haproxy_env(config_with(tmp_path / "nope"))

"""The recovery config for a master whose state dir was lost (pure text checks)."""

from __future__ import annotations

from pathlib import Path

from haproxy_k8s.config.model import AdminState
from haproxy_k8s.haproxy.orphan import recovery_text
from haproxy_k8s.haproxy.paths import StatePaths

TEXT = """global
    stats socket /s/admin.sock mode 600 level admin expose-fd listeners
backend be_c0
    server m1 127.0.8.10:6443 check weight 100 slowstart 30s
    server m2 127.0.8.11:6443 check weight 100
    server m3 127.0.8.12:6443 check weight 100
backend fo_c0
    server m1 127.0.8.10:6443 weight 100
    server m2 127.0.8.11:6443 weight 100
"""


def test_the_admin_socket_is_spelled_to_bind_afresh() -> None:
    text = recovery_text(TEXT, StatePaths(Path("/s")))
    assert "stats socket /s/./admin.sock mode 600" in text
    assert text.count("admin.sock") == 1


def test_operator_states_hold_from_the_first_moment() -> None:
    states = {"c0/m1": AdminState.MAINT, "c0/m2": AdminState.DRAIN}
    lines = recovery_text(TEXT, StatePaths(Path("/s")), states).splitlines()
    servers = [line.split() for line in lines if line.split()[:1] == ["server"]]
    by_name: dict[str, list[list[str]]] = {}
    for words in servers:
        by_name.setdefault(words[1], []).append(words)
    assert all(words[-1] == "disabled" for words in by_name["m1"])  # both backends
    assert all(words[words.index("weight") + 1] == "0" for words in by_name["m2"])
    assert all("disabled" not in words and words[words.index("weight") + 1] == "100"
               for words in by_name["m3"])

"""An nftables ruleset for the ports a config listens on: `haproxy-k8s firewall`.

Pure: a `Config` in, the ruleset text out. The ruleset is one table of its own,
`inet haproxy_k8s`, so loading it never touches the distribution's tables:

- each cluster bind's address and port is accepted from anywhere;
- the stats bind is accepted from `stats.allow` only, and dropped for everyone else;
- `metrics.bind` (the daemon's own metrics, loopback by default) is left alone.

nftables runs every base chain of a hook and only a drop is final: an accept in
this table cannot override a `policy drop` in another one. So every packet this
table accepts also gets `ACCEPT_MARK` set, and a ruleset that drops by default
opens all of them, whatever the binds become, with one line of its own:
`meta mark & 0x00002000 != 0 accept` (docs/operations.md, "Firewall").
"""

from __future__ import annotations

import ipaddress

from ..config.model import Bind, Config

TABLE = "haproxy_k8s"
# One bit of the packet mark, outside the bits kube-proxy (0x4000, 0x8000), Cilium
# (0x0f00), Calico (0xffff0000) and Tailscale (0xff0000) use.
ACCEPT_MARK = 0x00002000
# Before the distribution's filter chains (priority 0): the mark must be set first.
PRIORITY = "filter - 10"

_WILDCARDS = ("0.0.0.0", "::")


def render_firewall(config: Config) -> str:
    """The nftables ruleset (for `nft -f`) that opens exactly `config`'s listeners."""
    mark = f"meta mark set meta mark | 0x{ACCEPT_MARK:08x} accept"
    rules: list[str] = []
    for cluster in config.clusters:
        rules.append(f"# cluster {cluster.name}: from anywhere")
        rules += [f"{_destination(bind)} {mark}" for bind in sorted(cluster.binds)]
    stats = config.stats.bind
    if stats is not None:
        allow = [ipaddress.ip_network(cidr) for cidr in config.stats.allow]
        rules.append(f"# stats page {stats}: from stats.allow only")
        for family, version in (("ip", 4), ("ip6", 6)):
            cidrs = [str(net) for net in allow if net.version == version]
            if cidrs and _reaches(stats, version):
                rules.append(f"{_destination(stats)} {family} saddr {{ {', '.join(cidrs)} }} "
                             f"{mark}")
        rules.append(f"{_destination(stats)} drop")
    body = "\n".join(f"\t\t{rule}" for rule in rules)
    return (
        "# Rendered by `haproxy-k8s firewall`: the ports haproxy-k8s listens on.\n"
        "# Load with `nft -f FILE` (it replaces only this table). Accepted packets\n"
        f"# carry mark 0x{ACCEPT_MARK:08x}: an input chain with policy drop elsewhere\n"
        f"# needs `meta mark & 0x{ACCEPT_MARK:08x} != 0 accept` to let them in.\n"
        f"table inet {TABLE}\n"
        f"delete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n"
        "\tchain input {\n"
        f"\t\ttype filter hook input priority {PRIORITY}; policy accept;\n"
        f"{body}\n"
        "\t}\n"
        "}\n"
    )


def _destination(bind: Bind) -> str:
    """The match for packets to `bind`: address and port, or the port on a wildcard."""
    if bind.host == "0.0.0.0":
        # HAProxy's IPv4 wildcard socket takes IPv4 only.
        return f"meta nfproto ipv4 tcp dport {bind.port}"
    if bind.host == "::":
        # An IPv6 wildcard socket takes IPv4 as well (unless bindv6only).
        return f"tcp dport {bind.port}"
    family = "ip6" if bind.is_ipv6 else "ip"
    return f"{family} daddr {bind.host} tcp dport {bind.port}"


def _reaches(bind: Bind, version: int) -> bool:
    """Whether clients of IP `version` can reach `bind` at all."""
    if bind.host == "::":
        return True
    if bind.host in _WILDCARDS:
        return version == 4
    return (6 if bind.is_ipv6 else 4) == version

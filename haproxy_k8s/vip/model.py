"""`[vip]`: a virtual IP shared by two balancers through keepalived (VRRP).

Plain data, built by `vip.schema`. Durations are in milliseconds.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum


class Manage(StrEnum):
    """Who runs keepalived: a separate systemd unit, or the daemon as its child."""

    UNIT = "unit"
    CHILD = "child"

# VRRPv3 counts the advert interval in centiseconds: 300 ms means a holder
# that vanishes (crash, link down) is replaced after 3 x 0.3 s + skew < 1.2 s;
# 500 ms measured p50 2.0 s but max 3.1 s end to end (docs/benchmarks.md).
DEFAULT_ADVERT_MS = 300
# VRRPv2 (the only version with a password) counts whole seconds.
DEFAULT_ADVERT_V2_MS = 1000
# The link whose carrier says "this balancer may hold the VIP" (see heartbeat.py).
DEFAULT_FIT_LINK = "hk8s-fit"


@dataclass(frozen=True)
class VipSettings:
    addresses: tuple[str, ...]  # CIDRs as given, normalised ("192.168.8.1/24")
    interface: str
    router_id: int
    priority: int
    peers: tuple[str, ...] = ()  # unicast peers; multicast when empty
    auth_password_file: str | None = None
    preempt: bool = False
    advert_interval_ms: int = DEFAULT_ADVERT_MS
    manage: Manage = Manage.UNIT
    keepalived: str = "keepalived"  # binary (child mode, and the config test)
    fit_link: str = DEFAULT_FIT_LINK

    @property
    def version(self) -> int:
        # RFC 5798 (VRRPv3) dropped authentication; a password means VRRPv2.
        return 2 if self.auth_password_file else 3

    @property
    def ips(self) -> tuple[str, ...]:
        """The bare addresses, without prefix length."""
        return tuple(str(ipaddress.ip_interface(a).ip) for a in self.addresses)

    def takeover_ms(self, backup_priority: int | None = None) -> float:
        """How long a backup waits for a holder that vanished without a goodbye.

        RFC 5798: Master_Down_Interval = 3 x advert + skew, skew = (256 - prio) x advert / 256.
        """
        prio = self.priority if backup_priority is None else backup_priority
        return 3 * self.advert_interval_ms + (256 - prio) * self.advert_interval_ms / 256

"""Validate `[vip]` into `VipSettings`; every error names the file and key.

Everything here reaches keepalived.conf, so strings are whitelisted like the
rest of the schema: no quotes, spaces, braces or newlines can get through.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

from ..config.schema import _choice, _Section
from ..config.values import _abs_path, _binary, _boolean, _duration, _integer, _Invalid
from .model import DEFAULT_ADVERT_V2_MS, Manage, VipSettings

KEYS = frozenset({"address", "interface", "router_id", "priority", "peers",
                  "auth_password_file", "preempt", "advert_interval", "manage",
                  "keepalived", "fit_link"})
# Linux interface names: at most 15 bytes, no '/', ':' or whitespace.
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def _ifname(value: Any) -> str:
    if not isinstance(value, str) or not _IFNAME.fullmatch(value):
        raise _Invalid(f"{value!r} is not an interface name (1-15 of A-Z a-z 0-9 _ . -)")
    return value


def _cidr_list(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _Invalid("expected an address such as '192.168.8.1/24' or a non-empty list")
    out = []
    for item in items:
        try:
            if not isinstance(item, str) or "%" in item or "/" not in item:
                raise ValueError(item)
            iface = ipaddress.ip_interface(item)
        except ValueError:
            raise _Invalid(f"{item!r} is not an address with a prefix length, such as "
                           "'192.168.8.1/24' or 'fd00::1/64'") from None
        out.append(str(iface))
    if len(set(out)) != len(out):
        raise _Invalid("lists an address twice")
    return tuple(out)


def _ip_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"expected a list of IP addresses, got {value!r}")
    out = []
    for item in value:
        try:
            if not isinstance(item, str) or "%" in item:
                raise ValueError(item)
            out.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise _Invalid(f"{item!r} is not an IP address") from None
    return tuple(out)


def build_vip(section: _Section) -> VipSettings | None:
    """The `[vip]` table, or None when the config has none."""
    if not section.data:
        return None
    for key in section.data:
        if key not in KEYS:
            raise section.error(f"unknown key {key!r}", key)
    vip = VipSettings(
        addresses=section.require("address", _cidr_list),
        interface=section.require("interface", _ifname),
        router_id=section.require("router_id", _integer(1, 255)),
        # 255 is the "address owner", which no tracking can demote: never for a pair.
        priority=section.require("priority", _integer(1, 254)),
        peers=section.get("peers", _ip_list, ()),
        auth_password_file=section.get("auth_password_file", _abs_path, None),
        preempt=section.get("preempt", _boolean, False),
        manage=section.get("manage", _choice(Manage), Manage.UNIT),
        keepalived=section.get("keepalived", _binary, "keepalived"),
        fit_link=section.get("fit_link", _ifname, VipSettings.fit_link),
    )
    return _with_advert(section, vip)


def _with_advert(section: _Section, vip: VipSettings) -> VipSettings:
    default = DEFAULT_ADVERT_V2_MS if vip.version == 2 else vip.advert_interval_ms
    advert = section.get("advert_interval", _duration(), default)
    key = "advert_interval"
    if vip.version == 2 and advert % 1000:
        raise section.error("VRRPv2 (needed for auth_password_file: VRRPv3 has no "
                            "authentication) counts whole seconds; write '1s' or more", key)
    if advert % 10 or not 10 <= advert <= 40_950:
        raise section.error("must be 10ms..40950ms in steps of 10ms (VRRPv3 centiseconds)",
                            key)
    if vip.version == 2 and advert > 255_000:
        raise section.error("VRRPv2 allows at most 255s", key)
    return dataclasses.replace(vip, advert_interval_ms=advert)

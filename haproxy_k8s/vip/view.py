"""The VIP lines of `haproxy-k8s status` (pure: works on the status document)."""

from __future__ import annotations

from typing import Any


def vip_lines(doc: dict[str, Any]) -> list[str]:
    vip = doc.get("vip")
    if not vip:
        return []
    fit = "fit" if vip.get("fit") else f"NOT FIT ({vip.get('fit_reason')})"
    lines = [f"vip:      {vip.get('role')} for {', '.join(vip.get('addresses') or [])} on "
             f"{vip.get('interface')} (router {vip.get('router_id')}, priority "
             f"{vip.get('priority')}), {fit}, {vip.get('transitions', 0)} transitions"]
    if vip.get("error"):
        lines.append(f"vip error: {vip['error']}")
    return lines

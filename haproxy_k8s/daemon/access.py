"""Who may scrape the daemon's metrics: the same model as HAProxy's stats page.

A source address outside `metrics.allow` gets 403; with `metrics.user` set,
a request without the right basic-auth credentials gets 401.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..config.model import MetricsSettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class Access:
    networks: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"),)
    user: str | None = None
    password: str | None = None

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # an IPv6 socket reports IPv4 clients as ::ffff:a.b.c.d
        return any(ip in net for net in self.networks)

    def authorized(self, header: str) -> bool:
        if self.user is None:
            return True
        if self.password is None:
            return False  # a user without a readable password: nobody gets in
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        # Constant time, and both compared: no hint which half was wrong.
        user_ok = hmac.compare_digest(user.encode(), self.user.encode())
        return hmac.compare_digest(password.encode(), self.password.encode()) and user_ok


def access_for(settings: MetricsSettings, password: str | None) -> Access:
    """The rules of `[metrics]`, with the password the applier read from its file."""
    networks = tuple(ipaddress.ip_network(cidr) for cidr in settings.allow)
    return Access(networks, settings.user, password)


def guard(app: WsgiApp, current: Callable[[], Access]) -> WsgiApp:
    """`app` behind the allowlist and basic auth that `current()` returns per request."""
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        access = current()
        if not access.allows(str(environ.get("REMOTE_ADDR", ""))):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"forbidden\n"]
        if not access.authorized(str(environ.get("HTTP_AUTHORIZATION", ""))):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                ("WWW-Authenticate", 'Basic realm="haproxy-k8s"')])
            return [b"unauthorized\n"]
        return app(environ, start_response)

    return guarded

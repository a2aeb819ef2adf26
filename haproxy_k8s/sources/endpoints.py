"""EndpointSlices → the nodes discovery wants. Pure: JSON values in, model values out.

An EndpointSlice of the `default/kubernetes` Service lists every apiserver
that is up. Each endpoint carries conditions: `ready` (nil means ready),
`serving` (nil means the same as ready) and `terminating` (nil means not). A
serving apiserver becomes a node in service; a terminating one becomes a node
that is drained (weight 0: no new connections, existing ones run out), never
cut; one neither serving nor terminating is left out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config.model import Node
from ..config.values import _address, _Invalid

SOURCE = "kubernetes"
SERVING_WEIGHT = Node("", "").weight
DRAIN_WEIGHT = 0  # HAProxy shows a server with weight 0 as DRAIN and sends it nothing new


class MalformedSlice(ValueError):
    """An EndpointSlice (or a list of them) that does not have the expected shape."""


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    serving: bool
    terminating: bool


@dataclass(frozen=True)
class Wanted:
    """What the slices ask for: nodes by name, and the address:port to drain."""

    nodes: tuple[Node, ...]
    draining: frozenset[tuple[str, int]]

    @property
    def addresses(self) -> frozenset[tuple[str, int]]:
        return frozenset((n.address, n.port) for n in self.nodes)


def slice_name(obj: Any) -> str:
    name = str(_field(_field(obj, "metadata", dict), "name", str))
    if not name:
        raise MalformedSlice("an EndpointSlice without metadata.name")
    return name


def resource_version(obj: Any) -> str:
    """metadata.resourceVersion of a list, an object or a BOOKMARK."""
    return str(_field(_field(obj, "metadata", dict), "resourceVersion", str))


def parse_slice(obj: Any, port_name: str) -> tuple[Endpoint, ...]:
    """The endpoints of one slice on the port named `port_name` ("" = the unnamed one)."""
    ports = [p for p in _list(obj, "ports") if isinstance(p, dict)
             and (p.get("name") or "") == port_name]
    if not ports:
        return ()  # a slice of this Service for another port: nothing for us
    port = ports[0].get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise MalformedSlice(f"port {port_name or '(unnamed)'}: {port!r} is not a port number")
    return tuple(_endpoints(obj, port))


def _endpoints(obj: Any, port: int) -> Iterable[Endpoint]:
    for item in _list(obj, "endpoints"):
        if not isinstance(item, dict):
            raise MalformedSlice(f"an endpoint is not an object: {item!r:.80}")
        conditions = item.get("conditions") or {}
        if not isinstance(conditions, dict):
            raise MalformedSlice("endpoint conditions are not an object")
        ready = _condition(conditions, "ready", True)
        serving = _condition(conditions, "serving", ready)
        terminating = _condition(conditions, "terminating", False)
        for address in _list(item, "addresses"):
            yield Endpoint(_valid_address(address), port, serving, terminating)


def _condition(conditions: Mapping[str, Any], key: str, default: bool) -> bool:
    value = conditions.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise MalformedSlice(f"conditions.{key} is not a boolean: {value!r:.40}")
    return value


def _valid_address(value: Any) -> str:
    try:
        return _address(value)
    except _Invalid as e:
        raise MalformedSlice(f"endpoint address: {e}") from None


def _field(obj: Any, key: str, kind: type) -> Any:
    if not isinstance(obj, dict):
        raise MalformedSlice(f"expected an object with {key!r}, got {type(obj).__name__}")
    value = obj.get(key, kind())
    if not isinstance(value, kind):
        raise MalformedSlice(f"{key} is not a {kind.__name__}")
    return value


def _list(obj: Any, key: str) -> list[Any]:
    value = _field(obj, key, list)
    assert isinstance(value, list)
    return value


def node_name(address: str) -> str:
    """A stable DNS-label name for a discovered address: 10.0.0.14 → 10-0-0-14.

    IPv6 uses the exploded form (fd00-0000-…-0014), which always starts and
    ends with a hex digit; DNS names (FQDN slices) keep their own spelling.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    text = ip.exploded if ip.version == 6 else str(ip)
    return text.replace(".", "-").replace(":", "-")


def wanted(endpoints: Iterable[Endpoint]) -> Wanted:
    """The nodes for these endpoints: serving ones in service, terminating ones drained.

    The same address:port in two slices (while a slice is being replaced) is
    one node, drained only when every slice says it is terminating.
    """
    by_addr: dict[tuple[str, int], bool] = {}  # address:port -> drain?
    for e in endpoints:
        if not (e.serving or e.terminating):
            continue
        key = (e.address, e.port)
        by_addr[key] = by_addr.get(key, True) and e.terminating
    nodes: dict[str, Node] = {}
    for (address, port), drain in sorted(by_addr.items()):
        name = node_name(address)
        if name in nodes:  # the same apiserver address on another port: rare, keep both
            name = f"{name}-{port}"
        nodes[name] = Node(name, address, port=port, source=SOURCE,
                           weight=DRAIN_WEIGHT if drain else SERVING_WEIGHT)
    draining = frozenset(k for k, drain in by_addr.items() if drain)
    return Wanted(tuple(sorted(nodes.values(), key=lambda n: n.name)), draining)

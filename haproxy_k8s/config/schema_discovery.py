"""The schema's part for discovery: `[clusters.NAME.discovery]` and disabled nodes.

Pure, like schema.py (which calls in here): a cluster's discovery table becomes
a `Discovery`, and the nodes a drop-in disabled become names and addresses
that discovery must keep out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import Discovery
from .values import _CLUSTER_NAME, _NAME_RULE, _abs_path, _address, _Invalid, _port, _show, _string

if TYPE_CHECKING:
    from .schema import _Section

DISCOVERY_KEYS = frozenset({"kubeconfig", "namespace", "service", "port_name"})
# Each frozenset() call makes a new 216-byte object: the usual "none disabled"
# shares this one (two per cluster were 0.4 MiB at 1,000 clusters).
_NONE: frozenset[Any] = frozenset()
_DEFAULT_PORT = 6443


def discovery_fields(cluster: _Section) -> dict[str, Any]:
    """The Cluster fields discovery adds: its table, and the nodes a drop-in disabled."""
    names, addresses = disabled_nodes(cluster)
    return {"discovery": discovery(cluster), "disabled_names": names,
            "disabled_addresses": addresses}


def discovery(cluster: _Section) -> Discovery | None:
    """`[clusters.NAME.discovery]`, or None when the cluster has none."""
    if "discovery" not in cluster.data:
        return None
    section = cluster.table("discovery")
    section.check_keys("discovery")
    base = Discovery(kubeconfig="")
    return Discovery(
        kubeconfig=section.require("kubeconfig", _abs_path),
        namespace=section.get("namespace", _k8s_name, base.namespace),
        service=section.get("service", _k8s_name, base.service),
        port_name=section.get("port_name", _port_name, base.port_name),
    )


def _k8s_name(value: Any) -> str:
    text = _string(value)
    if len(text) > 63 or not _CLUSTER_NAME.fullmatch(text):
        raise _Invalid(f"{_show(text)} is not a Kubernetes name ({_NAME_RULE})")
    return text


def _port_name(value: Any) -> str:
    # An EndpointSlice port may be unnamed: "" matches only that one.
    text = _string(value)
    return text if text == "" else _k8s_name(text)


def disabled_nodes(cluster: _Section) -> tuple[frozenset[str], frozenset[tuple[str, int]]]:
    """Names and address:port of the nodes a drop-in disabled.

    Called after the nodes were validated, so every value here parses.
    """
    tables = cluster.data.get("nodes")
    if not isinstance(tables, dict):
        return _NONE, _NONE
    names, addresses = set(), set()
    for name, table in tables.items():
        if not isinstance(table, dict) or table.get("enabled") is not False:
            continue
        names.add(name)
        if "address" in table:
            port = _port(table["port"]) if "port" in table else _DEFAULT_PORT
            addresses.add((_address(table["address"]), port))
    return frozenset(names) or _NONE, frozenset(addresses) or _NONE

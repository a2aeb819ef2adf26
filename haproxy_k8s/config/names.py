"""Names and default places: what the CLI and the status document need of the
config without importing its model (`status` starts faster without it).

`config/model.py` re-exports all of these.
"""

from __future__ import annotations

DEFAULT_CONFIG_DIR = "/etc/haproxy-k8s"
DEFAULT_STATE_DIR = "/run/haproxy-k8s"
# HAProxy backends are named after their cluster: the one place this is spelled.
BACKEND_PREFIX = "be_"
# A cluster's fail-open twins (its nodes again, without checks), either as a
# backend of their own (`fo_NAME`, when the cluster has backup nodes) or as
# backup servers in the cluster's backend (`fo_NODE`). Node and cluster names
# have no "_", so no node or cluster is ever mistaken for a twin.
FAILOPEN_PREFIX = "fo_"


def backend_name(cluster: str) -> str:
    return BACKEND_PREFIX + cluster


def failopen_backend_name(cluster: str) -> str:
    return FAILOPEN_PREFIX + cluster


def failopen_server_name(node: str) -> str:
    """A node's fail-open twin among the servers of its cluster's own backend."""
    return FAILOPEN_PREFIX + node


def is_failopen_server(server: str) -> bool:
    """Whether a server of a cluster's backend is a fail-open twin, not a node."""
    return server.startswith(FAILOPEN_PREFIX)


def is_node_server(backend: str, server: str) -> bool:
    """Whether `backend/server` stands for a node: a server of a cluster's own
    backend, not one of its proxy's summary rows, not a fail-open twin."""
    return cluster_of_backend(backend) is not None and server not in ("FRONTEND", "BACKEND") \
        and not is_failopen_server(server)


def cluster_of_failopen(backend: str) -> str | None:
    """The cluster a fail-open twin backend (`fo_NAME`) belongs to; None otherwise."""
    return backend[len(FAILOPEN_PREFIX):] if backend.startswith(FAILOPEN_PREFIX) else None


def cluster_of_backend(backend: str) -> str | None:
    """The cluster a backend belongs to; None for backends that are not ours."""
    return backend[len(BACKEND_PREFIX):] if backend.startswith(BACKEND_PREFIX) else None

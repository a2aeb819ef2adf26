"""Names and default places: what the CLI and the status document need of the
config without importing its model (`status` starts faster without it).

`config/model.py` re-exports all of these.
"""

from __future__ import annotations

DEFAULT_CONFIG_DIR = "/etc/haproxy-k8s"
DEFAULT_STATE_DIR = "/run/haproxy-k8s"
# HAProxy backends are named after their cluster: the one place this is spelled.
BACKEND_PREFIX = "be_"
# The fail-open twin of a cluster's backend (same nodes, no checks): its own prefix,
# so nothing that maps backends to clusters mistakes it for a cluster.
FAILOPEN_PREFIX = "fo_"


def backend_name(cluster: str) -> str:
    return BACKEND_PREFIX + cluster


def failopen_backend_name(cluster: str) -> str:
    return FAILOPEN_PREFIX + cluster


def cluster_of_failopen(backend: str) -> str | None:
    """The cluster a fail-open twin backend (`fo_NAME`) belongs to; None otherwise."""
    return backend[len(FAILOPEN_PREFIX):] if backend.startswith(FAILOPEN_PREFIX) else None


def cluster_of_backend(backend: str) -> str | None:
    """The cluster a backend belongs to; None for backends that are not ours."""
    return backend[len(BACKEND_PREFIX):] if backend.startswith(BACKEND_PREFIX) else None

"""Files the config names (ca_file, client_cert) must exist: say so by drop-in and key.

Without this, `haproxy -c` reports a missing CA file against a line of a
rendered (often temporary) haproxy.cfg the operator never wrote.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import ConfigError
from .model import Config
from .values import dotted_key

FILE_KEYS = ("ca_file", "client_cert")


def check_referenced_files(config: Config, provenance: Mapping[tuple[str, ...], str]) -> None:
    """Raise ConfigError for the first named file that cannot be read."""
    for cluster in config.clusters:
        for key in FILE_KEYS:
            path = getattr(cluster.settings, key)
            if not path:
                continue
            problem = _problem(path)
            if problem:
                # Set on the cluster, or inherited from [defaults].
                where: tuple[str, ...] = ("clusters", cluster.name, key)
                if where not in provenance:
                    where = ("defaults", key)
                raise ConfigError(f"{path}: {problem}", file=provenance.get(where),
                                  key=dotted_key(where))


def _problem(path: str) -> str:
    try:
        with open(path, "rb"):
            return ""
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "is a directory, expected a PEM file"
    except PermissionError:
        return f"cannot read it (as uid {os.geteuid()}): permission denied"
    except OSError as e:
        return f"cannot read it: {e.strerror}"

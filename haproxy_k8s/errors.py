"""One exception hierarchy for everything haproxy-k8s reports to an operator."""

from __future__ import annotations


class HaproxyK8sError(Exception):
    """Base class: every error the daemon records for `status` derives from it."""

    file: str | None = None

    def record(self) -> dict[str, str | None]:
        """The `file`/`message` pair that `status.json` shows as `last_error`."""
        return {"file": self.file, "message": str(self)}


class ConfigError(HaproxyK8sError):
    """A drop-in is unreadable, malformed or carries an invalid value.

    `file` is the path relative to the config dir when known, `key` the dotted
    key path (``clusters.cluster-0.nodes.m4.port``).
    """

    def __init__(self, message: str, file: str | None = None, key: str | None = None) -> None:
        self.message = message
        self.file = file
        self.key = key
        super().__init__(self._format())

    def _format(self) -> str:
        where = ": ".join(part for part in (self.file, self.key) if part)
        return f"{where}: {self.message}" if where else self.message


class RenderError(HaproxyK8sError):
    """The template could not be rendered (a bug, or a template edited badly)."""


class ValidationError(HaproxyK8sError):
    """`haproxy -c` refused the rendered candidate.

    `alerts` holds HAProxy's `[ALERT]` lines, each naming `[file:line]`.
    """

    def __init__(self, message: str, alerts: list[str] | None = None,
                 file: str | None = None) -> None:
        self.alerts = alerts or []
        self.file = file
        super().__init__(message)


class RuntimeApiError(HaproxyK8sError):
    """A runtime API (admin or master socket) command failed or timed out."""


class StateDirError(HaproxyK8sError):
    """A file in the state dir could not be written (read-only, full disk).

    The daemon keeps HAProxy serving what it runs, reports this, and tries
    the apply again with backoff.
    """


class ProcessError(HaproxyK8sError):
    """HAProxy could not be started, reloaded or stopped as asked."""

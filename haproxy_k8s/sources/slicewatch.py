"""List, then watch, the EndpointSlices of one Service; on its own thread.

The reflector pattern of client-go: list (which gives a resourceVersion),
then watch from that version with bookmarks, so a change arrives within a
round trip instead of at the next poll. A watch the server ends cleanly is
resumed from the last version seen (bookmarks keep it fresh); `410 Gone`
(the version was compacted away) means list again. Every failure — API
unreachable, 401/403, 5xx, an answer that is not an EndpointSlice — is
reported to the sink and retried after a doubling delay with a ceiling; the
sink keeps the last good answer meanwhile.

lightkube's own watch is not used: it cannot ask for bookmarks, would decode
a BOOKMARK as a whole EndpointSlice, and on 410 resumes without relisting
(slices deleted meanwhile would stay). The loop below is that difference.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..backoff import Backoff
from ..config.model import Discovery
from .endpoints import Endpoint, MalformedSlice, parse_slice, resource_version, slice_name
from .kubeclient import ApiError, KubeClient, Server, StreamBroken

log = logging.getLogger(__name__)

SERVICE_LABEL = "kubernetes.io/service-name"
# The server ends a watch after this long; it is then resumed at once. The
# read timeout is longer, so a silent (half-open) connection is noticed too.
WATCH_SECONDS = 290
READ_TIMEOUT = WATCH_SECONDS + 30
RETRY_INITIAL, RETRY_MAX = 0.5, 10.0
# A watch that ends sooner than this is a failure, not a resumable end: no hot loop.
MIN_WATCH = 1.0

Slices = dict[str, tuple[Endpoint, ...]]
Via = tuple[str, int] | None  # None: the kubeconfig's server; else a node's address


class Gone(Exception):
    """410: the resourceVersion is too old to watch from; list again."""


class Sink(Protocol):
    def synced(self, slices: Slices, version: str, how: str) -> None:
        """The whole current answer: after a list ("list") or a watch event ("event")."""

    def bookmark(self, version: str) -> None: ...

    def failed(self, message: str) -> None: ...

    def restarted(self, why: str) -> None:
        """A watch ended and is being resumed or relisted."""


class SliceWatch:
    def __init__(self, discovery: Discovery, sink: Sink,
                 targets: Callable[[], list[Via]],
                 client_factory: Callable[[str], KubeClient] = KubeClient) -> None:
        self.discovery = discovery
        self.sink = sink
        self.targets = targets
        self.client_factory = client_factory
        self.stop_event = threading.Event()
        self.backoff = Backoff(RETRY_INITIAL, RETRY_MAX)
        self._client: KubeClient | None = None
        self._lock = threading.Lock()
        self.path = f"/apis/discovery.k8s.io/v1/namespaces/{discovery.namespace}/endpointslices"
        self.selector = f"{SERVICE_LABEL}={discovery.service}"

    # -- thread ---------------------------------------------------------------
    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._session()
            except (ApiError, MalformedSlice, Gone) as e:
                if self.stop_event.is_set():
                    break
                message = str(e) if not isinstance(e, Gone) else "410 Gone on list"
                self.sink.failed(message)
            except Exception as e:
                # A library surprise (an odd kubeconfig, a plugin's output) must not end
                # discovery for good: report it, keep the last nodes, and try again.
                log.exception("discovery: unexpected error")
                self._close_client()
                self.sink.failed(f"unexpected error: {e!r}")
            delay = self.backoff.failed(time.monotonic())
            self.stop_event.wait(delay)
        self._close_client()

    def server(self) -> Server | None:
        """Where the kubeconfig says the API is (None before it was read)."""
        with self._lock:
            return self._client.server if self._client is not None else None

    def stop(self) -> None:
        self.stop_event.set()
        with self._lock:
            client = self._client
        if client is not None:
            client.interrupt()

    # -- one connected stretch: list, then watch until something breaks ------
    def _session(self) -> None:
        client = self._ensure_client()
        slices, version, via = self._list(client)
        while not self.stop_event.is_set():
            try:
                version = self._watch(client, via, slices, version)
            except Gone:
                self.sink.restarted("410 Gone: relisting")
                slices, version, via = self._list(client)
                continue
            if not self.stop_event.is_set():
                self.sink.restarted("watch ended: resuming")

    def _ensure_client(self) -> KubeClient:
        with self._lock:
            if self._client is None:
                # Re-read each time it is needed after a failure: a fixed
                # kubeconfig (a new token) is picked up without a restart.
                self._client = self.client_factory(self.discovery.kubeconfig)
            return self._client

    def _close_client(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _list(self, client: KubeClient) -> tuple[Slices, str, Via]:
        errors: list[str] = []
        for via in self.targets():
            try:
                body = client.get_json(self.path, {"labelSelector": self.selector}, via)
            except ApiError as e:
                errors.append(str(e))
                if e.status in (401, 403):
                    self._close_client()  # re-read the kubeconfig (and token) next time
                    break
                continue
            slices = self._parse_list(body)
            version = resource_version(body)
            self.sink.synced(dict(slices), version, "list")
            self.backoff = Backoff(RETRY_INITIAL, RETRY_MAX)  # connected: start over
            return slices, version, via
        raise ApiError("; ".join(errors) or "no address to reach the API at")

    def _parse_list(self, body: Any) -> Slices:
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise MalformedSlice("the list answer has no items")
        return {slice_name(item): parse_slice(item, self.discovery.port_name)
                for item in body["items"]}

    def _watch(self, client: KubeClient, via: Via, slices: Slices, version: str) -> str:
        """Apply watch events to `slices` until the stream ends; the last version seen."""
        params = {"labelSelector": self.selector, "watch": "1", "resourceVersion": version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS)}
        started = time.monotonic()
        try:
            with client.stream(self.path, params, READ_TIMEOUT, via) as lines:
                version = self._events(lines, slices, version)
        except StreamBroken:
            if time.monotonic() - started < MIN_WATCH or self.stop_event.is_set():
                raise
            return version  # a dropped watch resumes; the API being down fails there
        except ApiError as e:
            if e.status == 410:
                raise Gone() from e
            raise
        if time.monotonic() - started < MIN_WATCH and not self.stop_event.is_set():
            raise ApiError("the watch ended as soon as it started")
        return version

    def _events(self, lines: Iterator[str], slices: Slices, version: str) -> str:
        for line in lines:
            if self.stop_event.is_set():
                break
            if not line.strip():
                continue
            kind, obj = _event(line)
            if kind == "ERROR":
                _raise_status(obj)
            version = resource_version(obj) or version
            if kind == "BOOKMARK":
                self.sink.bookmark(version)
                continue
            name = slice_name(obj)
            if kind == "DELETED":
                slices.pop(name, None)
            elif kind in ("ADDED", "MODIFIED"):
                slices[name] = parse_slice(obj, self.discovery.port_name)
            else:
                raise MalformedSlice(f"unknown watch event type {kind!r:.40}")
            self.sink.synced(dict(slices), version, "event")
        return version


def _event(line: str) -> tuple[str, Any]:
    try:
        event = json.loads(line)
    except ValueError as e:
        raise MalformedSlice(f"a watch line is not JSON: {line[:80]!r}") from e
    if not isinstance(event, dict) or not isinstance(event.get("type"), str) \
            or not isinstance(event.get("object"), dict):
        raise MalformedSlice(f"a watch line is not an event: {line[:80]!r}")
    return event["type"], event["object"]


def _raise_status(status: Any) -> None:
    """An ERROR event carries a Status: 410 means relist, anything else is a failure."""
    code = status.get("code") if isinstance(status, dict) else None
    message = status.get("message", "") if isinstance(status, dict) else ""
    if code == 410:
        raise Gone()
    raise ApiError(f"watch error {code}: {message}", status=code if isinstance(code, int)
                   else None)

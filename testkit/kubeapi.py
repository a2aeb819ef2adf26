"""A stand-in Kubernetes API for discovery tests: real TLS, real list/watch protocol.

Serves the EndpointSlices of `default/kubernetes` (one slice, `kubernetes`):
- `GET …/endpointslices?labelSelector=kubernetes.io/service-name=kubernetes`: a list with
  metadata.resourceVersion;
- the same with `watch=1&resourceVersion=N[&allowWatchBookmarks=true]`: chunked JSON lines
  (ADDED/MODIFIED/DELETED, BOOKMARK, ERROR with a 410 Status when N is too old);
- the discovery documents (/api, /apis, …) kubectl needs to find `endpointslices`.
A bearer token is checked (401 otherwise). Tests steer it: add/remove endpoints, flip
ready/terminating, drop the watches, answer 410/401/500/garbage, go away and come back.
Listens on 127.0.8.x only.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from haproxy_k8s.demo.certs import CertBundle

SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
SELECTOR = "kubernetes.io/service-name=kubernetes"
BOOKMARK_EVERY = 1.0  # seconds; the real apiserver sends them about once a minute

GROUPS = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
    "name": "discovery.k8s.io", "versions": [{"groupVersion": "discovery.k8s.io/v1",
                                              "version": "v1"}],
    "preferredVersion": {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}}]}
RESOURCES = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "discovery.k8s.io/v1",
             "resources": [{"name": "endpointslices", "singularName": "endpointslice",
                            "namespaced": True, "kind": "EndpointSlice",
                            "verbs": ["get", "list", "watch"]}]}
DOCS: dict[str, Any] = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": []},
    "/apis": GROUPS,
    "/apis/discovery.k8s.io/v1": RESOURCES,
    "/version": {"major": "1", "minor": "30", "gitVersion": "v1.30.0"},
}


class KubeApi:
    """The stand-in. `mode`: "ok" | "401" | "500" | "garbage" | "empty" (a list of nothing)."""

    def __init__(self, certs: CertBundle, host: str, token: str = "s3cret", port: int = 0,
                 api_port: int = 6443, keep_events: int = 1000) -> None:
        self.certs, self.host, self.token = certs, host, token
        self.port = port
        self.api_port = api_port  # the port the slice lists for every apiserver
        self.keep_events = keep_events
        self.mode = "ok"
        self.version = 100
        self.endpoints: dict[str, dict[str, bool]] = {}  # address -> conditions
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.requests: list[str] = []
        self.lock = threading.Condition()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.open: set[socket.socket] = set()

    # -- steering -------------------------------------------------------------
    def set(self, address: str, ready: bool = True, serving: bool | None = None,
            terminating: bool = False) -> None:
        """Add or change one apiserver endpoint (a MODIFIED event)."""
        with self.lock:
            self.endpoints[address] = {"ready": ready, "serving": ready if serving is None
                                       else serving, "terminating": terminating}
            self._changed("MODIFIED")

    def remove(self, address: str) -> None:
        with self.lock:
            self.endpoints.pop(address, None)
            self._changed("MODIFIED")

    def compact(self) -> None:
        """Forget every event: a watch from an older resourceVersion gets 410 Gone."""
        with self.lock:
            self.events.clear()
            self.version += 1
            self.lock.notify_all()

    def drop_watches(self) -> None:
        with self.lock:
            conns = list(self.open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def set_mode(self, mode: str) -> None:
        with self.lock:
            was, self.mode = self.mode, mode
            if was == "empty":
                self._changed("MODIFIED")  # the endpoints are back: a watch sees them
        if mode != "ok":
            self.drop_watches()  # so the client lists again and sees the mode

    def slice(self) -> dict[str, Any]:
        with self.lock:
            return self._slice()

    def _slice(self) -> dict[str, Any]:
        endpoints = [{"addresses": [a], "conditions": dict(c)}
                     for a, c in sorted(self.endpoints.items())]
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "resourceVersion": str(self.version),
                             "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": "IPv4", "endpoints": endpoints,
                "ports": [{"name": "https", "port": self.api_port, "protocol": "TCP"}]}

    def _changed(self, kind: str) -> None:
        self.version += 1
        self.events.append((self.version, kind, self._slice()))
        del self.events[:-self.keep_events]
        self.lock.notify_all()

    # -- serving -----------------------------------------------------------------
    def start(self) -> KubeApi:
        api = self

        class Handler(_Handler):
            owner = api

        server = _Server((self.host, self.port), Handler)
        server.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certs.cert_file, self.certs.key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
        self.port = server.server_address[1]
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                       name="standin-kubeapi", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Go away: stop listening and cut every connection."""
        server, thread = self.server, self.thread
        self.server = self.thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        self.drop_watches()
        with self.lock:
            self.lock.notify_all()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def kubeconfig(self, path: Any, server: str | None = None, token: str | None = None) -> Any:
        """Write a kubeconfig for this API (token auth, the test CA) to `path`."""
        text = json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {
                "server": server or self.url, "certificate-authority": str(self.certs.ca_file)}}],
            "users": [{"name": "test", "user": {"token": token or self.token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]})
        path.write_text(text)  # JSON is YAML
        return path

    def watch_events(self, since: int) -> Iterator[tuple[int, str, dict[str, Any]] | None]:
        """Events after `since`, blocking for new ones; None: send a bookmark; 410 raises."""
        while True:
            with self.lock:
                if self.server is None or self.mode not in ("ok", "empty"):
                    return
                # Events are contiguous since the last compaction: a version
                # before the oldest kept one cannot be watched from.
                if since < self.version and (not self.events or self.events[0][0] > since + 1):
                    raise _Gone()
                pending = [e for e in self.events if e[0] > since]
                if not pending:
                    self.lock.wait(BOOKMARK_EVERY)
                    pending = [e for e in self.events if e[0] > since]
            if not pending:
                yield None
                continue
            for event in pending:
                since = event[0]
                yield event


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that go away mid-request (tests cut them on purpose)


class _Gone(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    owner: KubeApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        api = self.owner
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        api.requests.append(self.path)
        if self.headers.get("Authorization") != f"Bearer {api.token}" or api.mode == "401":
            return self._json(401, _status(401, "Unauthorized"))
        if api.mode == "500":
            return self._json(500, _status(500, "etcdserver: request timed out"))
        if url.path in DOCS:
            return self._json(200, DOCS[url.path])
        if url.path != SLICES:
            return self._json(404, _status(404, "not found"))
        if api.mode == "garbage":
            return self._send(200, b"<html>this is not the API</html>", "text/html")
        if query.get("watch") in ("1", "true"):
            return self._watch(query)
        with api.lock:
            items = [] if api.mode == "empty" else [api._slice()]
            body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
                    "metadata": {"resourceVersion": str(api.version)}, "items": items}
        return self._json(200, body)

    def _watch(self, query: dict[str, str]) -> None:
        api = self.owner
        since = int(query.get("resourceVersion") or 0)
        bookmarks = query.get("allowWatchBookmarks") == "true"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with api.lock:
            api.open.add(self.connection)
        try:
            for event in api.watch_events(since):
                if event is None:
                    if bookmarks:
                        self._line({"type": "BOOKMARK", "object": {
                            "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                            "metadata": {"resourceVersion": str(api.version)}}})
                    continue
                self._line({"type": event[1], "object": event[2]})
        except _Gone:
            self._line({"type": "ERROR", "object": _status(410, "too old resource version")})
        except OSError:
            return
        finally:
            with api.lock:
                api.open.discard(self.connection)
        with contextlib.suppress(OSError):
            self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def _line(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _json(self, code: int, obj: dict[str, Any]) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json")

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "code": code}

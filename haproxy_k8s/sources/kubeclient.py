"""An authenticated HTTPS client for the API server a kubeconfig names.

lightkube reads the kubeconfig and turns it into an httpx client: the
server and its CA (file or data), and whichever credential the user entry
has — a client certificate (file or data), a bearer token, a token file
(re-read on 401, as rotated tokens need) or an exec credential plugin.
We only add the two requests discovery makes (list, watch) and the way to
reach the API without the balancer: the same request to a node's address,
with SNI and certificate verification still against the kubeconfig's server
name.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2 as httpx
from lightkube.config.client_adapter import Client, ConnectionParams
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ConfigError as KubeConfigError

from ..errors import HaproxyK8sError

log = logging.getLogger(__name__)
# One line per request (and a dozen per watch) would drown the daemon's own log.
logging.getLogger("httpx2").setLevel(logging.WARNING)
logging.getLogger("httpcore2").setLevel(logging.INFO)

CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 10.0


class ApiError(HaproxyK8sError):
    """The API could not be reached, refused us, or answered something unusable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class StreamBroken(ApiError):
    """A watch that was established broke off (reset, EOF mid-chunk, timeout)."""


@dataclass(frozen=True)
class Server:
    """The kubeconfig's `server`: where the API is, as the certificate names it."""

    url: str
    host: str
    port: int


def load_server(kubeconfig: str) -> tuple[Server, KubeConfig]:
    try:
        config = KubeConfig.from_file(kubeconfig)
        single = config.get()
    except (KubeConfigError, OSError, ValueError, KeyError, TypeError) as e:
        raise ApiError(f"kubeconfig {kubeconfig}: {e}") from e
    if single is None or not single.cluster.server:
        raise ApiError(f"kubeconfig {kubeconfig}: no server in the current context")
    parts = urlsplit(single.cluster.server)
    if parts.scheme != "https" or not parts.hostname:
        raise ApiError(f"kubeconfig {kubeconfig}: server {single.cluster.server!r} "
                       "is not an https:// URL")
    return Server(single.cluster.server, parts.hostname, parts.port or 443), config


class KubeClient:
    """GETs against the API server, or directly against one node's address."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.server, config = load_server(kubeconfig)
        single = config.get()
        assert single is not None
        # trust_env=False: no proxy and no CA from the environment; a balancer
        # talks to its apiservers directly, trusting the kubeconfig's CA only.
        params = ConnectionParams(timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT),
                                  trust_env=False)
        try:
            self._http = Client(single, params)
        except (KubeConfigError, OSError, ValueError) as e:
            raise ApiError(f"kubeconfig {kubeconfig}: {e}") from e
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None  # of the watch being read

    def close(self) -> None:
        self._http.close()

    def interrupt(self) -> None:
        """Wake a thread blocked reading a watch (from any thread): it ends with ApiError."""
        with self._lock:
            sock = self._socket
        if sock is not None:
            # The plain socket's shutdown, not SSLSocket's (which unwraps
            # under the reader's feet): the reader just sees the stream end.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def get_json(self, path: str, params: Mapping[str, str],
                 via: tuple[str, int] | None = None) -> object:
        """One GET, its JSON body (ApiError on anything else)."""
        try:
            response = self._http.send(self._request(path, params, via))
            try:
                _check(response)
                return response.json()
            finally:
                response.close()
        except (httpx.HTTPError, KubeConfigError) as e:
            raise ApiError(f"{self._where(via)}: {_describe(e)}") from e
        except ValueError as e:  # not JSON
            raise ApiError(f"{self._where(via)}: the answer is not JSON ({e})") from e

    @contextmanager
    def stream(self, path: str, params: Mapping[str, str], read_timeout: float,
               via: tuple[str, int] | None = None) -> Iterator[Iterator[str]]:
        """A streaming GET (a watch): its lines as they arrive."""
        request = self._request(path, params, via, read_timeout=read_timeout)
        try:
            response = self._http.send(request, stream=True)
        except (httpx.HTTPError, KubeConfigError) as e:
            raise ApiError(f"{self._where(via)}: {_describe(e)}") from e
        stream = response.extensions.get("network_stream")
        with self._lock:
            self._socket = stream.get_extra_info("socket") if stream is not None else None
        try:
            _check(response, streaming=True)
            yield self._lines(response, via)
        finally:
            with self._lock:
                self._socket = None
            response.close()

    def _lines(self, response: httpx.Response, via: tuple[str, int] | None) -> Iterator[str]:
        try:
            yield from response.iter_lines()
        except httpx.HTTPError as e:
            raise StreamBroken(f"{self._where(via)}: watch broke: {_describe(e)}") from e

    def _request(self, path: str, params: Mapping[str, str], via: tuple[str, int] | None,
                 read_timeout: float | None = None) -> httpx.Request:
        timeout = httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT, read=read_timeout) \
            if read_timeout is not None else None
        extensions = {}
        url = path
        if via is not None:
            host = f"[{via[0]}]" if ":" in via[0] else via[0]
            url = f"https://{host}:{via[1]}{path}"
            # The node's certificate is the apiserver's: it names the server the
            # kubeconfig says (the balancer's name), not the node's address.
            extensions["sni_hostname"] = self.server.host
        request = self._http.build_request("GET", url, params=dict(params),
                                           timeout=timeout or httpx.USE_CLIENT_DEFAULT)
        request.extensions.update(extensions)
        return request

    def _where(self, via: tuple[str, int] | None) -> str:
        if via is None:
            return self.server.url
        return f"{via[0]}:{via[1]} (directly, as {self.server.host})"


def _check(response: httpx.Response, streaming: bool = False) -> None:
    if response.status_code < 300:
        return
    if streaming:
        response.read()
    reason = _status_message(response)
    raise ApiError(f"HTTP {response.status_code}{': ' + reason if reason else ''}",
                   status=response.status_code)


def _status_message(response: httpx.Response) -> str:
    """The `message` of a Kubernetes Status body, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:120].strip()
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])[:200]
    return ""


def _describe(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) < 300 else text[:300] + "…"

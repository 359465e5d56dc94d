"""The gRPC front end's short way to a model: a call's HTTP form sent through this node's HTTP ingress.

With Serve's HAProxy direct ingress, the node's HTTP port hands a request straight to a replica of the app whose
route matches, so a V2 gRPC call forwarded there as its HTTP form (``POST /v2/models/<name>/infer``, the caller's
metadata as headers) reaches the model's ``ModelServer`` through HAProxy alone. The other way, a Ray handle call,
puts Serve's Python router in the front end's process for every call (``bench/serving.py`` measures both).

Without HAProxy (the Python proxy, or TLS, which keeps it) there is no such link: the front end calls the handle,
which is no slower than a Python proxy hop. A call the ingress did not deliver, or answered itself (HAProxy's own
404/503 while it learns a new app's route; every ray-deploy answer is JSON), is not an answer: the caller sends it by
handle instead. So is the server app's answer for a model it did not route (``NOT_ROUTED_HEADER``): HAProxy reloads
its configuration in a new process when apps and replicas change, and a connection kept alive from before stays with
the old process, which may not know a new app; the link then opens new connections.

Example:
    >>> link = IngressLink.of_node(Settings.from_env(), {"RAY_SERVE_ENABLE_HA_PROXY": "1"})
    >>> await link.send(HttpCall("GET", "/v2/models/iris/ready"), {"authorization": "Bearer rdk_..."})
    (200, b'{"name":"iris","version":"3","ready":true}', {'content-type': 'application/json', ...})
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import aiohttp

from ray_deploy.config import Settings
from ray_deploy.dataplane.routes import NOT_ROUTED_HEADER

if TYPE_CHECKING:  # the generated modules load in the replica only: see ray_deploy.dataplane.grpc_v2
    from ray_deploy.dataplane.grpc_v2.server import Answer
    from ray_deploy.dataplane.grpc_v2.translate import HttpCall

KEEPALIVE_S = 4.0
"""An idle connection to HAProxy is closed after this long, well before HAProxy closes it (Serve's keep-alive
timeout), so a call rarely meets a connection closed under it."""
MAX_CONNECTIONS = 256
DOWN_S = 5.0
"""After a refused connection the link is not tried again for this long (calls go by handle meanwhile)."""
_ANY_HOST = frozenset({"", "0.0.0.0", "::"})
_NOT_RETURNED = frozenset({"content-length", "transfer-encoding", "connection", "date", "server"})


class IngressLink:
    """Sends calls' HTTP forms to ``base_url`` (this node's HTTP ingress) over kept-alive connections."""

    def __init__(self, base_url: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.base_url = base_url
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._down_until = -float("inf")

    @property
    def down(self) -> bool:
        """Whether the ingress refused a connection in the last :data:`DOWN_S` (no HAProxy listens on this node)."""
        return self._clock() < self._down_until

    @classmethod
    def of_node(cls, settings: Settings, environ: Mapping[str, str]) -> IngressLink | None:
        """The link to this node's HAProxy (Serve's ``http_options`` host and port), or None when the cluster does not
        run HAProxy direct ingress (``RAY_SERVE_ENABLE_HA_PROXY``, set where the Ray node starts).

        Example:
            >>> IngressLink.of_node(Settings.from_env(), {}) is None
            True
        """
        if environ.get("RAY_SERVE_ENABLE_HA_PROXY") != "1" or settings.tls:
            return None
        host = "127.0.0.1" if settings.http_host in _ANY_HOST else settings.http_host
        return cls(f"http://{host}:{settings.http_port}")

    async def send(self, call: HttpCall, headers: Mapping[str, str]) -> Answer | None:
        """The model server's answer (status, body, headers), or None when the ingress did not deliver the call (no
        listener, a kept-alive connection it had closed) or answered itself."""
        if self.down:
            return None
        try:
            async with self._client().request(
                call.method, self.base_url + call.path, headers=dict(headers), data=call.body or None
            ) as response:
                status = response.status
                answer_headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in _NOT_RETURNED}
                body = await response.read()
        except aiohttp.ClientConnectorError:
            self._down_until = self._clock() + DOWN_S
            return None
        except aiohttp.ServerDisconnectedError:
            return None
        if status >= 400 and not answer_headers.get("content-type", "").startswith("application/json"):
            return None  # not a ray-deploy answer: the ingress itself (no route yet, no replica)
        if NOT_ROUTED_HEADER in answer_headers:
            self._reconnect()
            return None
        return status, body, answer_headers

    def _reconnect(self) -> None:
        """Open new connections from now on; the old ones close once the calls on them are done."""
        old, self._session = self._session, None
        if old is not None:
            asyncio.get_running_loop().call_later(KEEPALIVE_S, lambda: asyncio.ensure_future(old.close()))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S)
            self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    async def close(self) -> None:
        """Close the kept-alive connections."""
        if self._session is not None:
            await self._session.close()

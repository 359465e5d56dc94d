"""Talking to a Ray cluster over HTTP only: the Ray dashboard REST API (with Ray's auth token) and the
deployments' own ``/v2`` endpoint. The Jupyter server process uses this instead of ``ray.init``, so it
never becomes a Ray driver.

Example:
    >>> client = DashboardClient(dashboard_url(Settings.from_env()))
    >>> apps = await client.serve_applications()
    >>> doc = await fetch_stats(Settings.from_env().endpoint, "iris")
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ray_deploy.config import Settings
from ray_deploy.errors import ClusterError, ModelNotFound
from ray_deploy.status import MODEL_ROUTE

DASHBOARD_URL_ENV = "RAY_DEPLOY_DASHBOARD_URL"
_TOKEN_HELP = (
    "set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) for the Jupyter server, or store the cluster's token "
    "(`ray get-auth-token` on a machine of the cluster) in ~/.ray/auth_token"
)


class DashboardUnavailable(ClusterError):
    """No Ray dashboard answers (no cluster runs, or the URL is wrong)."""

    http_status = 503


class UpstreamFailed(ClusterError):
    """The Ray dashboard or a deployment endpoint answered with an error we cannot act on."""

    http_status = 502


def dashboard_url(settings: Settings, configured: str = "") -> str:
    """Where the Ray dashboard of the cluster is: the configured URL, ``RAY_DEPLOY_DASHBOARD_URL``, else
    derived from ``RAY_ADDRESS`` (its host, ``RAY_DEPLOY_DASHBOARD_PORT``), else the local head.

    Example:
        >>> dashboard_url(Settings.from_env())
        'http://127.0.0.1:8265'
    """
    explicit = configured or os.environ.get(DASHBOARD_URL_ENV, "")
    if explicit:
        return explicit.rstrip("/")
    address = settings.ray_address
    if address and address not in ("auto", "local"):
        if address.startswith(("http://", "https://")):  # the Jobs-API convention: RAY_ADDRESS is the dashboard
            return address.rstrip("/")
        host = urlsplit(address if "://" in address else f"ray://{address}").hostname or "127.0.0.1"
        return f"http://{host}:{settings.dashboard_port}"
    return f"http://127.0.0.1:{settings.dashboard_port}"


def is_remote(settings: Settings, configured: str = "") -> bool:
    """Whether the extension is pointed at a cluster other than the local head (so it cannot start it)."""
    explicit = configured or os.environ.get(DASHBOARD_URL_ENV, "")
    return bool(explicit) or (settings.ray_address not in (None, "auto", "local"))


def auth_token() -> str | None:
    """Ray's auth token, looked up as Ray does: ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``.

    Read on every call, so a token generated after the server started (e.g. by ``ray-deploy up``) is used.

    Example:
        >>> auth_token() is None or len(auth_token()) > 0
        True
    """
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class DashboardClient:
    """The few Ray dashboard REST calls the server extension needs; every call is async and non-blocking."""

    url: str
    timeout_s: float = 10.0

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node the cluster knows (state API ``/api/v0/nodes``), alive or not."""
        answer = await self._call("GET", "/api/v0/nodes?limit=10000")
        try:
            return list(answer["data"]["result"]["result"])
        except (KeyError, TypeError):
            raise UpstreamFailed(f"the Ray dashboard at {self.url} sent an unexpected node list") from None

    async def version(self) -> dict[str, Any]:
        """Ray's version and session (``/api/version``)."""
        return dict(await self._call("GET", "/api/version"))

    async def serve_applications(self) -> dict[str, Any]:
        """Serve's details of every application (``/api/serve/applications/``), as ``serve status`` sees them."""
        return dict(await self._call("GET", "/api/serve/applications/"))

    async def submit_job(self, entrypoint: str, submission_id: str, metadata: dict[str, str]) -> str:
        """Submit a Ray Job (``POST /api/jobs/``); returns its submission id."""
        body = {"entrypoint": entrypoint, "submission_id": submission_id, "metadata": metadata}
        answer = await self._call("POST", "/api/jobs/", body)
        return str(answer.get("submission_id") or submission_id)

    async def job(self, submission_id: str) -> dict[str, Any]:
        """A submitted job's details (status, message, metadata); :class:`ModelNotFound` when unknown."""
        return dict(await self._call("GET", f"/api/jobs/{quote(submission_id, safe='')}", what="job"))

    async def job_logs(self, submission_id: str) -> str:
        """Everything the job's entrypoint printed so far."""
        answer = await self._call("GET", f"/api/jobs/{quote(submission_id, safe='')}/logs", what="job")
        return str(answer.get("logs") or "")

    async def _call(self, method: str, path: str, body: Any = None, what: str = "") -> Any:
        headers = {"Content-Type": "application/json"}
        token = auth_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = HTTPRequest(
            f"{self.url}{path}",
            method=method,
            headers=headers,
            body=json.dumps(body) if body is not None else None,
            connect_timeout=min(3.0, self.timeout_s),
            request_timeout=self.timeout_s,
        )
        code, text = await _fetch(request, f"the Ray dashboard at {self.url}")
        if code in (401, 403):
            problem = "needs Ray's auth token and none was found" if not token else "refused the Ray auth token"
            raise UpstreamFailed(f"the Ray dashboard at {self.url} {problem} (HTTP {code}); {_TOKEN_HELP}")
        if code == 404 and what:
            raise ModelNotFound(f"the Ray cluster has no {what} {path.rsplit('/', 2)[-1]!r}: {text[:200]}")
        if code >= 400:
            raise UpstreamFailed(
                f"the Ray dashboard at {self.url} answered HTTP {code} to {method} {path}: {text[:500]}"
            )
        return _json(text, f"the Ray dashboard at {self.url}")


async def fetch_stats(endpoint: str, name: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The status document a deployment serves at ``GET {endpoint}/v2/models/<name>/stats``.

    Example:
        >>> (await fetch_stats("http://127.0.0.1:8000", "iris"))["state"]
        'RUNNING'
    """
    url = f"{endpoint}{MODEL_ROUTE}{quote(name, safe='')}/stats"
    request = HTTPRequest(url, connect_timeout=min(3.0, timeout_s), request_timeout=timeout_s)
    code, text = await _fetch(request, f"the ray-deploy endpoint {endpoint}")
    if code >= 400:
        raise UpstreamFailed(f"{url} answered HTTP {code}: {text[:300]}")
    doc = _json(text, url)
    if not isinstance(doc, dict):
        raise UpstreamFailed(f"{url} did not send a status document")
    return doc


async def _fetch(request: HTTPRequest, what: str) -> tuple[int, str]:
    """Send ``request``; HTTP error statuses come back as codes, an unreachable server raises 503."""
    try:
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
    except (OSError, HTTPClientError) as exc:  # refused, unreachable, timed out (HTTP 599)
        raise DashboardUnavailable(f"{what} does not answer ({exc})") from None
    if response.code == 599:
        raise DashboardUnavailable(f"{what} does not answer ({response.error})")
    return response.code, response.body.decode("utf-8", "replace") if response.body else ""


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise UpstreamFailed(f"{what} sent a non-JSON answer: {text[:200]!r}") from None

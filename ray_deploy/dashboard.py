"""Talking to a Ray cluster over HTTP only: the Ray dashboard REST API (with Ray's auth token) and the
ray-deploy ``/v2`` endpoint. A process that must not become a Ray driver (the Jupyter server) uses this
instead of ``ray.init``; it imports neither Ray nor anything Jupyter-specific (HTTP is aiohttp's client,
a dependency of ``ray[serve]``).

Example:
    >>> client = DashboardClient(dashboard_url(Settings.from_env()))
    >>> apps = await client.serve_applications()
    >>> rows = await fetch_model_list(Settings.from_env().endpoint)   # every status document, one call
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from ray_deploy.config import Settings
from ray_deploy.errors import ClusterError, ModelNotFound

DASHBOARD_URL_ENV = "RAY_DEPLOY_DASHBOARD_URL"
MODEL_LIST_ROUTE = "/v2/models"
AUDIT_ROUTE = "/v2/audit"
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

    async def stop_job(self, submission_id: str) -> bool:
        """Ask Ray to stop a job (``POST /api/jobs/<id>/stop``); False when it had already ended."""
        answer = await self._call("POST", f"/api/jobs/{quote(submission_id, safe='')}/stop", what="job")
        return bool(answer.get("stopped"))

    async def job_logs(self, submission_id: str) -> str:
        """Everything the job's entrypoint printed so far."""
        answer = await self._call("GET", f"/api/jobs/{quote(submission_id, safe='')}/logs", what="job")
        return str(answer.get("logs") or "")

    async def _call(self, method: str, path: str, body: Any = None, what: str = "") -> Any:
        headers = {"Content-Type": "application/json"}
        token = auth_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body) if body is not None else None
        code, text = await _fetch(
            method, f"{self.url}{path}", self.timeout_s, f"the Ray dashboard at {self.url}", headers, data
        )
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


async def fetch_model_list(
    endpoint: str, timeout_s: float = 10.0, headers: dict[str, str] | None = None, cafile: str | None = None
) -> list[dict[str, Any]]:
    """Every deployment with its status document, from ONE call: ``GET {endpoint}/v2/models?stats=1``.

    The ``/v2`` server app answers it from the deployments' Monitors, never from their model replicas, so
    a deployment scaled to zero is not woken up. Rows are returned as sent (``ray_deploy.documents.ModelRow``
    describes them); a row's ``status`` may say that its Monitor did not answer. ``headers`` carry the API key;
    ``cafile`` is the certificate to trust for an HTTPS endpoint with a self-signed one.

    Example:
        >>> [row["name"] for row in await fetch_model_list("http://127.0.0.1:8000")]
        ['iris']
    """
    url = f"{endpoint.rstrip('/')}{MODEL_LIST_ROUTE}?stats=1"
    doc = await _get_from_endpoint(endpoint, url, timeout_s, headers, cafile)
    rows = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise UpstreamFailed(f"{url} did not send a model list")
    return rows


async def fetch_audit_trail(
    endpoint: str,
    name: str | None,
    since: float | None,
    timeout_s: float = 10.0,
    headers: dict[str, str] | None = None,
    cafile: str | None = None,
) -> dict[str, Any]:
    """A deployment's audit trail from ``GET {endpoint}/v2/audit`` (the ``/v2`` server app reads it from the
    audit actor on the head, wherever that runs); needs an admin key in ``headers``.

    Example:
        >>> (await fetch_audit_trail("http://127.0.0.1:8000", "iris", None, headers=auth_headers()))["entries"][0]
        {'action': 'deploy', ...}
    """
    from urllib.parse import urlencode

    query = {k: v for k, v in (("deployment", name), ("since", None if since is None else f"{since:.3f}")) if v}
    url = f"{endpoint.rstrip('/')}{AUDIT_ROUTE}" + (f"?{urlencode(query)}" if query else "")
    doc = await _get_from_endpoint(endpoint, url, timeout_s, headers, cafile)
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        raise UpstreamFailed(f"{url} did not send an audit trail")
    return doc


async def _get_from_endpoint(
    endpoint: str, url: str, timeout_s: float, headers: dict[str, str] | None, cafile: str | None
) -> Any:
    """``GET url`` of the ray-deploy endpoint as JSON; an HTTP error status raises :class:`UpstreamFailed`."""
    code, text = await _fetch("GET", url, timeout_s, f"the ray-deploy endpoint {endpoint}", headers, cafile=cafile)
    if code >= 400:
        raise UpstreamFailed(f"{url} answered HTTP {code}: {text[:300]}")
    return _json(text, url)


async def _fetch(
    method: str,
    url: str,
    timeout_s: float,
    what: str,
    headers: dict[str, str] | None = None,
    data: str | None = None,
    cafile: str | None = None,
) -> tuple[int, str]:
    """Send one request; HTTP error statuses come back as codes, an unreachable server raises 503."""
    import ssl

    import aiohttp

    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(3.0, timeout_s))
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                method,
                url,
                headers=headers,
                data=data,
                ssl=ssl.create_default_context(cafile=cafile) if cafile else True,
            ) as response,
        ):
            return response.status, await response.text(errors="replace")
    except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:  # refused, unreachable, timed out
        raise DashboardUnavailable(f"{what} does not answer ({str(exc) or type(exc).__name__})") from None


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise UpstreamFailed(f"{what} sent a non-JSON answer: {text[:200]!r}") from None


def run_sync(call: Any) -> Any:
    """Run a coroutine to completion from synchronous code, also where an event loop already runs (a kernel).

    Example:
        >>> run_sync(DashboardClient("http://127.0.0.1:8265").job("ray-deploy-retrain-iris-0a1b2c3d"))["status"]
        'RUNNING'
    """
    import asyncio
    import concurrent.futures

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, call).result()

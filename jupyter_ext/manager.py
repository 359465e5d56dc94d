"""``DeploymentManager``: everything the server extension's REST handlers answer, computed over HTTP only.

The Jupyter server process never becomes a Ray driver: the manager reads the cluster through the Ray
dashboard REST API and the ray-deploy ``/v2`` endpoint (:mod:`ray_deploy.dashboard`), and changes it
through Ray Jobs that run the ``ray-deploy`` CLI inside the cluster (:mod:`ray_deploy.jobs`). Every answer
is a typed wire document (:mod:`ray_deploy.documents`). The handlers (:mod:`jupyter_ext.handlers`) only
parse input, call one method of the manager found in the tornado settings, and reply, so their tests
replace it with a fake.

Configuration (``jupyter_server_config.py``), each also settable by environment variable::

    c.RayDeployServer.dashboard_url = "http://head:8265"   # RAY_DEPLOY_DASHBOARD_URL
    c.RayDeployServer.job_python = "/opt/venv/bin/python"  # RAY_DEPLOY_JOB_PYTHON

Example:
    >>> manager = DeploymentManager(RayDeployServer())
    >>> [doc.name for doc in (await manager.deployments()).deployments]
    ['iris']
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any, Protocol

from pydantic import ValidationError
from traitlets import Float, Unicode
from traitlets.config import Configurable

from ray_deploy.cluster import _started_head_port
from ray_deploy.config import Settings
from ray_deploy.dashboard import (
    DashboardClient,
    DashboardUnavailable,
    UpstreamFailed,
    dashboard_url,
    fetch_audit_trail,
    fetch_model_list,
    is_remote,
)
from ray_deploy.documents import (
    ActionDocument,
    AuditTrail,
    ClusterDocument,
    DeploymentDetails,
    DeploymentList,
    ModelRow,
    StatusDocument,
    VersionDocument,
)
from ray_deploy.errors import ModelNotFound, RayDeployError
from ray_deploy.jobs import action_status, start_local_cluster, submit_action
from ray_deploy.keys import project_headers
from ray_deploy.status import model_apps, status_document

log = logging.getLogger(__name__)

JOB_PYTHON_ENV = "RAY_DEPLOY_JOB_PYTHON"


class RayDeployServer(Configurable):
    """Settings of the ray-deploy server extension (``c.RayDeployServer.<name>`` in Jupyter config)."""

    dashboard_url = Unicode(
        "",
        help="Ray dashboard URL of the cluster, e.g. http://head:8265. Default: env RAY_DEPLOY_DASHBOARD_URL, "
        "else the host of RAY_ADDRESS on RAY_DEPLOY_DASHBOARD_PORT, else the local head (127.0.0.1).",
    ).tag(config=True)
    job_python = Unicode(
        "",
        help="Python interpreter that runs the ray-deploy CLI inside Ray Jobs (scale, delete, promote, rollback). "
        "Default: env RAY_DEPLOY_JOB_PYTHON, else this server's interpreter for the local cluster, "
        "`python` for a remote one.",
    ).tag(config=True)
    request_timeout_s = Float(10.0, help="Timeout of each call to the Ray dashboard or an endpoint.").tag(config=True)
    start_timeout_s = Float(600.0, help="Longest wait for `ray-deploy up` when starting the local cluster.").tag(
        config=True
    )


class Manager(Protocol):
    """What the handlers call; :class:`DeploymentManager` is the real one, tests pass a fake."""

    async def cluster(self) -> ClusterDocument:
        """The cluster document."""
        ...

    async def start_cluster(self) -> ClusterDocument:
        """Start the local cluster unless one answers; the cluster document after."""
        ...

    async def deployments(self) -> DeploymentList:
        """The status document of every deployment."""
        ...

    async def deployment(self, name: str) -> DeploymentDetails:
        """One deployment's status document plus its registry versions."""
        ...

    async def scale(self, name: str, min_replicas: int, max_replicas: int) -> ActionDocument:
        """Start scaling a deployment (an action)."""
        ...

    async def delete(self, name: str) -> ActionDocument:
        """Start deleting a deployment (an action)."""
        ...

    async def promote(self, name: str) -> ActionDocument:
        """Start promoting the running rollout's challenger (an action)."""
        ...

    async def rollback(self, name: str, to_version: str | None) -> ActionDocument:
        """Start rolling back to the previous champion, or to ``to_version`` (an action)."""
        ...

    async def action(self, action_id: str) -> ActionDocument:
        """The current state of an action."""
        ...

    async def audit(self, name: str, since: float | None) -> AuditTrail:
        """The audit entries of a deployment (since ``since``) and the log's chain check."""
        ...


class DeploymentManager:
    """The real manager: reads settings from the environment on every call (so a changed variable counts).

    Example:
        >>> manager = DeploymentManager(RayDeployServer(dashboard_url="http://head:8265"))
        >>> (await manager.cluster()).connected
        True
    """

    def __init__(self, config: RayDeployServer | None = None) -> None:
        self.config = config if config is not None else RayDeployServer()
        self._start_lock = asyncio.Lock()  # two clicks start one cluster

    @property
    def settings(self) -> Settings:
        """Where things run, from the environment (read on every use)."""
        return Settings.from_env()

    def dashboard(self, settings: Settings | None = None) -> DashboardClient:
        """A client of the cluster's Ray dashboard."""
        url = dashboard_url(settings or self.settings, self.config.dashboard_url)
        return DashboardClient(url, self.config.request_timeout_s)

    # ---- reads -------------------------------------------------------------------------------

    async def cluster(self) -> ClusterDocument:
        """The cluster document; ``connected: false`` with what to do when no dashboard answers.

        Example:
            >>> (await manager.cluster()).message
            'connected: 1 node(s), 8 CPU, 0 GPU'
        """
        settings = self.settings
        client = self.dashboard(settings)
        remote = is_remote(settings, self.config.dashboard_url)
        doc: dict[str, Any] = {
            "connected": False,
            "address": settings.ray_address,
            "dashboard_url": client.url,
            "endpoint": settings.endpoint,
            "nodes": 0,
            "cpus": 0.0,
            "gpus": 0.0,
            "local": not remote and _started_head_port(settings) == settings.ray_port,
            "message": "",
        }
        try:
            nodes, serve = await asyncio.gather(client.nodes(), client.serve_applications())
        except DashboardUnavailable as exc:
            doc["message"] = (
                f"no Ray dashboard answers at {client.url} ({exc.message}); check that the cluster runs and that "
                "RAY_DEPLOY_DASHBOARD_URL / RAY_ADDRESS point at it"
                if remote
                else f"no Ray cluster at {client.url}; start the local one (POST cluster/start or `ray-deploy up`)"
            )
            return ClusterDocument(**doc)
        except UpstreamFailed as exc:
            doc["message"] = exc.message
            return ClusterDocument(**doc)
        alive = [n for n in nodes if n.get("state") == "ALIVE"]
        head = next((n for n in alive if n.get("is_head_node")), None)
        if doc["address"] is None and head is not None:
            doc["address"] = f"{head.get('node_ip')}:{settings.ray_port}"
        doc.update(
            connected=True,
            nodes=len(alive),
            cpus=float(sum(n.get("resources_total", {}).get("CPU", 0) for n in alive)),
            gpus=float(sum(n.get("resources_total", {}).get("GPU", 0) for n in alive)),
        )
        if "ray-deploy" not in (serve.get("applications") or {}):
            doc["message"] = (
                "Ray runs but the ray-deploy server app does not; run `ray-deploy up` (or POST cluster/start)"
            )
        else:
            doc["message"] = f"connected: {len(alive)} node(s), {doc['cpus']:g} CPU, {doc['gpus']:g} GPU"
        return ClusterDocument(**doc)

    async def deployments(self) -> DeploymentList:
        """Every deployment's status document, from ONE call to the endpoint (``GET /v2/models?stats=1``).

        The ``/v2`` server app answers it from the deployments' Monitors, never from their model replicas,
        so a deployment scaled to zero is not woken up. When the endpoint does not answer, or a Monitor did
        not, the document is built from Serve's details read through the dashboard (``traffic: null``).

        Example:
            >>> [doc.name for doc in (await manager.deployments()).deployments]
            ['churn', 'iris']
        """
        settings = self.settings
        client = self.dashboard(settings)
        try:
            rows = await fetch_model_list(
                settings.endpoint,
                self.config.request_timeout_s,
                project_headers(settings),
                str(settings.tls_cert) if settings.tls_cert else None,
            )
        except RayDeployError as exc:
            log.info("ray-deploy: the endpoint does not list the deployments, using Serve's details: %s", exc)
            apps = await self._model_apps(client)
            docs = [self._serve_status(name, app, settings, client.url) for name, app in apps.items()]
            return DeploymentList(deployments=sorted(docs, key=lambda doc: doc.name))
        docs = []
        apps_read: dict[str, dict[str, Any]] | None = None
        for row in rows:
            doc = _status_of(row)
            if doc is None:
                if apps_read is None:  # one dashboard read for every deployment whose Monitor did not answer
                    apps_read = await self._model_apps(client)
                app = apps_read.get(str(row.get("name")))
                if app is None:  # deleted since the endpoint listed it
                    continue
                doc = self._serve_status(str(row["name"]), app, settings, client.url)
            docs.append(doc)
        return DeploymentList(deployments=sorted(docs, key=lambda doc: doc.name))

    async def deployment(self, name: str) -> DeploymentDetails:
        """One deployment's status document (the same as in the list) plus every registered version.

        Example:
            >>> [v.version for v in (await manager.deployment("iris")).versions]
            ['1', '2']
        """
        listing = await self.deployments()
        doc = next((d for d in listing.deployments if d.name == name), None)
        if doc is None:
            raise ModelNotFound(f"no deployment named {name!r}; deployed: {[d.name for d in listing.deployments]}")
        versions = await asyncio.to_thread(registry_versions, name, self.settings.mlflow_uri, doc)
        update: dict[str, Any] = {}
        if not doc.aliases:  # the Monitor did not answer: the registry still knows the aliases
            aliases = {alias: v.version for v in versions for alias in v.aliases}
            serving = next((a for a, v in sorted(aliases.items()) if v == doc.version), None)
            update = {"aliases": aliases, "alias": serving}
        return DeploymentDetails.model_validate(
            {**doc.model_dump(), **update, "versions": [v.model_dump() for v in versions]}
        )

    async def action(self, action_id: str) -> ActionDocument:
        """The current state of a scale, delete, promote or rollback action (read back from its Ray Job).

        Example:
            >>> (await manager.action("ray-deploy-scale-0123456789ab")).status
            'SUCCEEDED'
        """
        return await action_status(self.dashboard(), action_id)

    async def audit(self, name: str, since: float | None = None) -> AuditTrail:
        """The deployment's audit entries (newest 200, oldest first) and the whole log's hash-chain check.

        Read through the endpoint (``GET /v2/audit`` with the project key), whose server app asks the audit actor
        on the head: this process is not a Ray driver, and the log is on the head, wherever that runs.

        Example:
            >>> (await manager.audit("iris")).verification.ok
            True
        """
        settings = self.settings
        doc = await fetch_audit_trail(
            settings.endpoint,
            name,
            since,
            self.config.request_timeout_s,
            project_headers(settings),
            str(settings.tls_cert) if settings.tls_cert else None,
        )
        return AuditTrail.model_validate(doc)

    # ---- changes -----------------------------------------------------------------------------

    async def start_cluster(self) -> ClusterDocument:
        """Run ``ray-deploy up`` (a subprocess) unless a cluster answers already; the cluster document after.

        Example:
            >>> (await manager.start_cluster()).connected
            True
        """
        async with self._start_lock:
            doc = await self.cluster()
            if not doc.connected:
                await start_local_cluster(self.config.start_timeout_s)
                doc = await self.cluster()
        if not doc.connected:
            raise UpstreamFailed(f"`ray-deploy up` finished but the cluster does not answer: {doc.message}")
        return doc

    async def scale(self, name: str, min_replicas: int, max_replicas: int) -> ActionDocument:
        """Start ``ray-deploy scale <name> --min .. --max ..`` as a Ray Job (bounds already validated).

        Example:
            >>> (await manager.scale("iris", 1, 3)).status
            'PENDING'
        """
        settings = self.settings
        client = self.dashboard(settings)
        await self._model_app(client, name)
        args = ["--min", str(min_replicas), "--max", str(max_replicas)]
        return await submit_action(client, "scale", name, args, self.job_python(settings), settings)

    async def delete(self, name: str) -> ActionDocument:
        """Start ``ray-deploy delete <name>`` as a Ray Job.

        Example:
            >>> (await manager.delete("iris")).action
            'delete'
        """
        settings = self.settings
        client = self.dashboard(settings)
        await self._model_app(client, name)
        return await submit_action(client, "delete", name, [], self.job_python(settings), settings)

    async def promote(self, name: str) -> ActionDocument:
        """Start ``ray-deploy promote <name>`` as a Ray Job: the challenger becomes the champion.

        Example:
            >>> (await manager.promote("iris")).action
            'promote'
        """
        settings = self.settings
        client = self.dashboard(settings)
        await self._model_app(client, name)
        return await submit_action(client, "promote", name, [], self.job_python(settings), settings)

    async def rollback(self, name: str, to_version: str | None = None) -> ActionDocument:
        """Start ``ray-deploy rollback <name> [--to <version>]`` as a Ray Job.

        Example:
            >>> (await manager.rollback("iris", "2")).status
            'PENDING'
        """
        settings = self.settings
        client = self.dashboard(settings)
        await self._model_app(client, name)
        args = ["--to", to_version] if to_version is not None else []
        return await submit_action(client, "rollback", name, args, self.job_python(settings), settings)

    def job_python(self, settings: Settings | None = None) -> str:
        """The interpreter a job runs the CLI with: configured, else ours (local cluster) or ``python``."""
        configured = self.config.job_python or os.environ.get(JOB_PYTHON_ENV, "")
        if configured:
            return configured
        return "python" if is_remote(settings or self.settings, self.config.dashboard_url) else sys.executable

    # ---- helpers -----------------------------------------------------------------------------

    async def _model_apps(self, client: DashboardClient) -> dict[str, dict[str, Any]]:
        """Serve's details of every ray-deploy app (route under ``/v2/models/``), from the dashboard."""
        return model_apps(await client.serve_applications())

    async def _model_app(self, client: DashboardClient, name: str) -> dict[str, Any]:
        apps = await self._model_apps(client)
        if name not in apps:
            raise ModelNotFound(f"no deployment named {name!r}; deployed: {sorted(apps)}")
        return apps[name]

    def _serve_status(self, name: str, app: dict[str, Any], settings: Settings, dashboard: str) -> StatusDocument:
        """The status document built from Serve's details alone (no traffic, no history, no aliases)."""
        doc = status_document(name, app, None, settings.endpoint, time.time(), dashboard, settings.mlflow_uri)
        return StatusDocument.model_validate(doc)


def _status_of(row: dict[str, Any]) -> StatusDocument | None:
    """The status document of a model-list row, or None (logged) when the endpoint could not give one."""
    try:
        parsed = ModelRow.model_validate(row)
    except ValidationError as exc:
        log.warning("ray-deploy: unreadable status of %r from the endpoint, using Serve's details: %s", row, exc)
        return None
    if isinstance(parsed.status, StatusDocument):
        return parsed.status
    why = parsed.status.error if parsed.status is not None else "no status sent"
    log.info("ray-deploy: status of %r unavailable, using Serve's details: %s", parsed.name, why)
    return None


def registry_versions(name: str, mlflow_uri: str, doc: StatusDocument) -> list[VersionDocument]:
    """Every registered version of ``name`` (oldest first) with aliases, creation time and run.

    MLflow is read directly (it is not Ray); if the store cannot be read from here, the serving version
    from the status document is all that is listed.

    Example:
        >>> [v.version for v in registry_versions("iris", "sqlite:///mlflow.db", doc)]
        ['1', '2']
    """
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
        found = client.search_model_versions(f"name = '{name.replace(chr(39), chr(92) + chr(39))}'")
        aliases_of: dict[str, list[str]] = {}
        if found:  # search results carry no aliases on every store; the registered model has them all
            for alias, version in (client.get_registered_model(name).aliases or {}).items():
                aliases_of.setdefault(str(version), []).append(alias)
    except Exception as exc:  # any MLflow/store failure: fall back to what the cluster says
        log.warning("ray-deploy: cannot read the registry at %s for %r: %s", mlflow_uri, name, exc)
        if doc.version is None:
            return []
        aliases = sorted(a for a, v in doc.aliases.items() if v == doc.version) or ([doc.alias] if doc.alias else [])
        return [VersionDocument(version=doc.version, aliases=aliases, created_at=None, run_id=None)]
    rows = [
        VersionDocument(
            version=str(v.version),
            aliases=sorted(aliases_of.get(str(v.version), [])),
            created_at=v.creation_timestamp / 1000 if v.creation_timestamp else None,
            run_id=v.run_id or None,
        )
        for v in found
    ]
    return sorted(rows, key=lambda row: int(row.version))

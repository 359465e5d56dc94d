"""Building the Serve applications: the only place ``serve.deployment`` is applied.

A deployment's app is a ``ModelServer`` (the ingress) fed by a ``Monitor``, with an ``Explainer`` beside it
(scaled to zero until asked); the ``/v2`` app is
``ServerInfo``. Resource and replica options go to Serve; the version, kind and remaining options travel
as ``user_config``, so a new version or limit is applied in place without restarting replicas.

Example:
    >>> app = build_model_app("iris", "3", "sklearn", DeployOptions(), Settings.from_env())
    >>> serve_api.run_app(app, name="iris", route_prefix="/v2/models/iris")
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ray_deploy import serve_api
from ray_deploy.config import CaptureSpec, DeployOptions, DriftSpec, Settings
from ray_deploy.dataplane.explainer import Explainer
from ray_deploy.dataplane.ingress import ModelServer
from ray_deploy.dataplane.monitor import Monitor
from ray_deploy.dataplane.served_model import ArtifactSource, artifact_source
from ray_deploy.dataplane.server_info import ServerInfo


@dataclass(frozen=True)
class Monitoring:
    """What a deployment captures and how it measures drift; ``salt`` keys the hashing of hashed columns."""

    capture: CaptureSpec = field(default_factory=CaptureSpec)
    drift: DriftSpec = field(default_factory=DriftSpec)
    salt: str = ""

    def user_config(self) -> dict[str, Any]:
        """The part of the ``user_config`` that replicas and the Monitor read."""
        capture, drift = self.capture.model_dump(mode="json"), self.drift.model_dump(mode="json")
        return {"capture": capture, "drift": drift, "salt": self.salt}


def build_server_app() -> Any:
    """The ``ray-deploy`` app served at ``/v2``."""
    from ray import serve

    return serve.deployment(name="ServerInfo", ray_actor_options={"num_cpus": 0})(ServerInfo).bind()


def build_model_app(
    name: str,
    version: str,
    kind: str,
    options: DeployOptions,
    settings: Settings,
    dashboard_url: str = "",
    monitoring: Monitoring | None = None,
    rollout: dict[str, Any] | None = None,
    sources: Mapping[str, ArtifactSource] | None = None,
) -> Any:
    """The Serve application of one deployment: a ``ModelServer`` fed by a ``Monitor``.

    ``rollout`` (``{"mode", "challenger", "kind", "share", "sticky_header", "rollout_id"}``) gives the ``Challenger``
    deployment replicas serving the challenger version; without one it has none. ``sources`` (version ->
    :class:`ArtifactSource`, from :func:`artifact_sources`) let replicas load without opening the registry.
    """
    from ray import serve

    # A stable code version: a redeploy that changes only the version, options or split reconfigures the running
    # replicas in place (Serve restarts every replica of an unversioned deployment on each deploy).
    code = code_version(name, settings)
    is_torch = kind == "torch"
    # Serve restarts every replica when the actor options' serialized form changes, and 0 and 0.0 serialize apart:
    # a scale or a new version (options read back from the running app's JSON) must compare equal to the deploy's
    actor_options: dict[str, Any] = {"num_cpus": float(options.num_cpus), "num_gpus": float(options.num_gpus)}
    if options.memory:
        actor_options["memory"] = options.memory
    user_config = {
        "version": version,
        "kind": kind,
        "options": options.model_dump(mode="json"),
        **(monitoring or Monitoring()).user_config(),
        **_artifacts(version, sources),
    }
    monitor = serve.deployment(
        name="Monitor", num_replicas=1, ray_actor_options={"num_cpus": 0}, user_config=user_config
    )(Monitor)
    explainer = serve.deployment(
        name="Explainer",
        ray_actor_options={"num_cpus": 0.1},
        max_ongoing_requests=4,
        user_config=user_config,
        # asleep until the first explanation: a deploy starts no extra process
        autoscaling_config={"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1, "downscale_delay_s": 600},
    )(Explainer)
    challenger_config = {**user_config, "role": "challenger"}
    if rollout is not None:
        challenger_config.pop("artifacts", None)
        version_b = str(rollout["challenger"])
        challenger_config.update(version=version_b, kind=rollout["kind"], **_artifacts(version_b, sources))
    logging_config = {"enable_access_log": options.access_log}
    challenger = serve.deployment(
        name="Challenger",
        ray_actor_options=actor_options,
        logging_config=logging_config,
        max_ongoing_requests=options.ongoing_requests(rollout is not None and rollout["kind"] == "torch"),
        **_backpressure(options),
        max_surge_percent=100,
        user_config=challenger_config,
        **(
            {"num_replicas": max(1, options.min_replicas)}
            if rollout is not None
            # no replica outside a rollout (nothing is sent to it then, so it never wakes)
            else {"autoscaling_config": {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1}}
        ),
    )(ModelServer)
    server = serve.deployment(
        name="ModelServer",
        ray_actor_options=actor_options,
        logging_config=logging_config,
        max_ongoing_requests=options.ongoing_requests(is_torch),
        **_backpressure(options),
        max_surge_percent=100,  # a restart starts new replicas before stopping the old
        user_config={**user_config, "rollout": rollout},
        **_scaling(options),
    )(ModelServer)
    monitor, explainer, challenger, server = (
        serve_api.pin_code_version(d, code) for d in (monitor, explainer, challenger, server)
    )
    monitor_handle = monitor.bind(name, settings.endpoint, dashboard_url, settings.mlflow_uri, settings.capture_uri)
    return server.bind(
        name,
        settings.mlflow_uri,
        monitor_handle,
        explainer.bind(name, settings.mlflow_uri),
        challenger.bind(name, settings.mlflow_uri, monitor_handle),
    )


def artifact_sources(name: str, *versions: str) -> dict[str, ArtifactSource]:
    """The :class:`ArtifactSource` of each of ``versions`` that has a recorded digest, for :func:`build_model_app`.

    Example:
        >>> artifact_sources("iris", "3")["3"].sha256
        '9b1c...'
    """
    found = {version: artifact_source(name, version) for version in versions}
    return {version: source for version, source in found.items() if source is not None}


def _artifacts(version: str, sources: Mapping[str, ArtifactSource] | None) -> dict[str, Any]:
    source = (sources or {}).get(version)
    return {} if source is None else {"artifacts": asdict(source)}


def code_version(name: str, settings: Settings) -> str:
    """What the replicas' code and constructor arguments depend on; a change restarts them.

    Example:
        >>> code_version("iris", Settings.from_env())
        '0.1.0-3f9a2c1b7e'
    """
    from importlib import metadata

    version = metadata.version("ray-deploy")
    # Not the dashboard URL: each process names it as it reaches it (a notebook 127.0.0.1, an actor or a Ray Job the
    # node's address), and a redeploy from a rollout controller or a retrain job must not restart the replicas.
    parts = [version, name, settings.mlflow_uri, settings.capture_uri, settings.endpoint]
    return f"{version}-{hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:10]}"


def _backpressure(options: DeployOptions) -> dict[str, Any]:
    """Overload answers at once: past ``max_queued_requests`` waiting requests, a 503 with ``Retry-After: 1``."""
    return {
        "max_queued_requests": options.max_queued_requests,
        "backpressure_config": {"status_code": 503, "retry_after_s": 1},
    }


def _scaling(options: DeployOptions) -> dict[str, Any]:
    if not options.autoscaling:
        return {"num_replicas": options.min_replicas}
    return {
        "autoscaling_config": {
            "min_replicas": options.min_replicas,
            "max_replicas": options.max_replicas,
            "initial_replicas": options.initial_replicas,
            "target_ongoing_requests": options.target_ongoing_requests,
            "upscale_delay_s": options.upscale_delay_s,
            "look_back_period_s": options.look_back_period_s,
            # deprecated in Serve (the push interval variables of cluster.SERVE_ENV replace it), but Serve
            # still warns unless it is below look_back_period_s
            "metrics_interval_s": 1.0,
            "downscale_delay_s": options.downscale_delay_s,
        }
    }

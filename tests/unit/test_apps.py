"""How a deployment's Serve app is built: what decides whether Serve restarts its replicas on a change."""

from __future__ import annotations

import json
import pickle
from typing import Any

from ray_deploy.config import DeployOptions, Settings
from ray_deploy.dataplane.apps import build_model_app
from ray_deploy.dataplane.served_model import ArtifactSource


def _model_server(options: DeployOptions) -> Any:
    app = build_model_app("iris", "1", "sklearn", options, Settings.from_env())
    return app._bound_deployment  # the ingress: ModelServer


def test_a_scale_keeps_the_replicas_actor_options_byte_for_byte() -> None:
    """Serve restarts every replica when the serialized actor options differ (0 and 0.0 do): options read back
    from the running app's JSON must give the same bytes as the deploy's own."""
    deployed = DeployOptions(num_cpus=1)
    read_back = DeployOptions(**{**json.loads(deployed.model_dump_json()), "min_replicas": 2, "max_replicas": 2})
    before, after = _model_server(deployed), _model_server(read_back)
    assert pickle.dumps(before.ray_actor_options) == pickle.dumps(after.ray_actor_options)
    assert before.version == after.version  # the pinned code version: config changes reconfigure in place
    assert after._deployment_config.num_replicas == 2


def test_the_served_versions_artifact_sources_travel_in_the_user_config() -> None:
    """A starting replica loads from the source the deploy resolved (the champion's and, in a rollout, the
    challenger's), so it need not open the registry; a version without a recorded digest has none."""
    sources = {"1": ArtifactSource("file:///store/a", "aa"), "2": ArtifactSource("file:///store/b", "bb")}
    rollout = {"mode": "canary", "challenger": "2", "kind": "sklearn", "share": 0.1}
    app = build_model_app(
        "iris", "1", "sklearn", DeployOptions(), Settings.from_env(), rollout=rollout, sources=sources
    )
    server = app._bound_deployment
    challenger = server.init_args[4]  # ModelServer(name, tracking_uri, monitor, explainer, challenger)
    assert server.user_config["artifacts"] == {"uri": "file:///store/a", "sha256": "aa"}
    assert challenger._bound_deployment.user_config["artifacts"] == {"uri": "file:///store/b", "sha256": "bb"}
    plain = build_model_app("iris", "3", "sklearn", DeployOptions(), Settings.from_env(), sources=sources)
    assert "artifacts" not in plain._bound_deployment.user_config


def test_serves_access_log_is_off_unless_asked_for() -> None:
    """Capture, metrics and the audit trail record every request; Serve's per-request log line is opt-in."""
    quiet, logged = _model_server(DeployOptions()), _model_server(DeployOptions(access_log=True))
    assert quiet._deployment_config.logging_config["enable_access_log"] is False
    assert logged._deployment_config.logging_config["enable_access_log"] is True

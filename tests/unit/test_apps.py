"""How a deployment's Serve app is built: what decides whether Serve restarts its replicas on a change."""

from __future__ import annotations

import json
import pickle
from typing import Any

from ray_deploy.config import DeployOptions, Settings
from ray_deploy.dataplane.apps import build_model_app


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

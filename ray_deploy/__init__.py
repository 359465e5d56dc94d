"""ray-deploy: take a model from a notebook to an autoscaling, versioned Ray Serve deployment.

Example:
    >>> import ray_deploy
    >>> dep = ray_deploy.deploy(clf, name="iris", sample_input=X[:5])
    >>> dep.predict(X[:2])
    array([0, 0])

Importing this package is cheap: Ray, MLflow and the ML libraries load when first used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ray_deploy.cluster import ClusterInfo, cluster_info, connect, shutdown
from ray_deploy.config import (
    AutoRetrainSpec,
    CaptureSpec,
    DeployOptions,
    DriftSpec,
    GateSpec,
    RetrainSpec,
    RolloutSpec,
    Settings,
)
from ray_deploy.deployment import Deployment, delete, deploy, get, list_deployments
from ray_deploy.errors import (
    BadRequest,
    ClusterError,
    ConfigError,
    DeploymentFailed,
    InsufficientResources,
    ModelFailed,
    ModelNotFound,
    NotReady,
    PayloadTooLarge,
    RayDeployError,
    RequestTimeout,
    SchemaMismatch,
)
from ray_deploy.retraining import RetrainResult, retrain

__all__ = [
    "AutoRetrainSpec",
    "BadRequest",
    "CaptureSpec",
    "ClusterError",
    "ClusterInfo",
    "ConfigError",
    "DeployOptions",
    "Deployment",
    "DeploymentFailed",
    "DriftReport",
    "DriftSpec",
    "Explanation",
    "FairnessReport",
    "GateSpec",
    "InsufficientResources",
    "ModelFailed",
    "Mitigation",
    "ModelNotFound",
    "NotReady",
    "PayloadTooLarge",
    "RayDeployError",
    "RequestTimeout",
    "RetrainResult",
    "RetrainSpec",
    "Rollout",
    "RolloutSpec",
    "SchemaMismatch",
    "Settings",
    "__version__",
    "cluster_info",
    "connect",
    "delete",
    "deploy",
    "get",
    "list_deployments",
    "mitigate",
    "retrain",
    "shutdown",
]

# Result classes of explanations, fairness, drift and rollouts load pandas or Ray; they load when first used.
_LAZY = {
    "DriftReport": "ray_deploy.drift_report",
    "Rollout": "ray_deploy.rollouts",
    "Explanation": "ray_deploy.explanation",
    "FairnessReport": "ray_deploy.fairness",
    "Mitigation": "ray_deploy.mitigation",
    "mitigate": "ray_deploy.mitigation",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ray_deploy' has no attribute {name!r}")

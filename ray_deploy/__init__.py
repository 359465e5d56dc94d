"""ray-deploy: take a model from a notebook to an autoscaling, versioned Ray Serve deployment.

Example:
    >>> import ray_deploy
    >>> dep = ray_deploy.deploy(clf, name="iris", sample_input=X[:5])
    >>> dep.predict(X[:2])
    array([0, 0])

Importing this package is cheap: Ray, MLflow and the ML libraries load when first used.
"""

from __future__ import annotations

import typing as _typing

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
    Forbidden,
    InsufficientResources,
    IntegrityError,
    ModelFailed,
    ModelNotFound,
    NotReady,
    PayloadTooLarge,
    RateLimited,
    RayDeployError,
    RequestTimeout,
    SchemaMismatch,
    Unauthorized,
)
from ray_deploy.retraining import RetrainResult, retrain

if _typing.TYPE_CHECKING:  # the lazy names below, typed for checkers
    from ray_deploy.audit import acting_as, audit_log, verify_audit
    from ray_deploy.drift_report import DriftReport
    from ray_deploy.explanation import Explanation
    from ray_deploy.fairness import FairnessReport
    from ray_deploy.keys import auth_headers, create_key, default_key, list_keys, revoke_key, set_auth
    from ray_deploy.mitigation import Mitigation, mitigate
    from ray_deploy.rollouts import Rollout

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
    "Forbidden",
    "GateSpec",
    "InsufficientResources",
    "IntegrityError",
    "Mitigation",
    "ModelFailed",
    "ModelNotFound",
    "NotReady",
    "PayloadTooLarge",
    "RateLimited",
    "RayDeployError",
    "RequestTimeout",
    "RetrainResult",
    "RetrainSpec",
    "Rollout",
    "RolloutSpec",
    "SchemaMismatch",
    "Settings",
    "Unauthorized",
    "__version__",
    "acting_as",
    "audit_log",
    "auth_headers",
    "cluster_info",
    "connect",
    "create_key",
    "default_key",
    "delete",
    "deploy",
    "get",
    "list_deployments",
    "list_keys",
    "mitigate",
    "retrain",
    "revoke_key",
    "set_auth",
    "shutdown",
    "verify_audit",
]

# Result classes of explanations, fairness, drift and rollouts load pandas or Ray; they load when first used.
_LAZY = {
    "DriftReport": "ray_deploy.drift_report",
    "Rollout": "ray_deploy.rollouts",
    "Explanation": "ray_deploy.explanation",
    "FairnessReport": "ray_deploy.fairness",
    "Mitigation": "ray_deploy.mitigation",
    "mitigate": "ray_deploy.mitigation",
    "acting_as": "ray_deploy.audit",
    "audit_log": "ray_deploy.audit",
    "verify_audit": "ray_deploy.audit",
    "auth_headers": "ray_deploy.keys",
    "create_key": "ray_deploy.keys",
    "default_key": "ray_deploy.keys",
    "list_keys": "ray_deploy.keys",
    "revoke_key": "ray_deploy.keys",
    "set_auth": "ray_deploy.keys",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ray_deploy' has no attribute {name!r}")

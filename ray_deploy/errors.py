"""The one exception hierarchy of ray-deploy; each error knows its HTTP status.

Every message says what is wrong and what to do about it, e.g.::

    >>> str(ModelNotFound("no deployment named 'churn'; deployed: ['iris']"))
    "no deployment named 'churn'; deployed: ['iris']"

The tree (HTTP status in brackets)::

    RayDeployError [500]
    ├── ConfigError [400]
    ├── BadRequest [400]
    ├── Unauthorized [401]
    ├── Forbidden [403]
    ├── ModelNotFound [404]
    ├── MethodNotAllowed [405]
    ├── PayloadTooLarge [413]
    ├── SchemaMismatch [422]
    ├── RateLimited [429]
    ├── NotReady [503]
    ├── ModelFailed [500]
    ├── RequestTimeout [504]
    ├── DeploymentFailed [500]
    │   ├── InsufficientResources [500]
    │   └── IntegrityError [500]
    └── ClusterError [500]
"""

from __future__ import annotations

from typing import Any


class RayDeployError(Exception):
    """Base class: a failure the user can act on. ``http_status`` maps it onto the HTTP API."""

    http_status: int = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        """The JSON error body of the HTTP contract: ``{"error": message, **details}``."""
        return {"error": self.message, **self.details}


class ConfigError(RayDeployError):
    """Invalid deployment options or settings."""

    http_status = 400


class BadRequest(RayDeployError):
    """A malformed request body (not JSON, wrong envelope)."""

    http_status = 400


class Unauthorized(RayDeployError):
    """No API key, or a key that is unknown, revoked or expired (send ``Authorization: Bearer <key>``)."""

    http_status = 401


class Forbidden(RayDeployError):
    """A valid API key without the scope or the deployment the request needs."""

    http_status = 403


class ModelNotFound(RayDeployError):
    """No deployment, model or version with that name."""

    http_status = 404


class MethodNotAllowed(RayDeployError):
    """The route exists but not with this HTTP method (the error names the allowed ones)."""

    http_status = 405


class PayloadTooLarge(RayDeployError):
    """The request body is larger than the deployment's ``max_body_mb``."""

    http_status = 413


class SchemaMismatch(RayDeployError):
    """The input does not match the model's registered signature."""

    http_status = 422


class RateLimited(RayDeployError):
    """The API key is over its rate limit; retry after ``retry_after_s`` seconds (the ``Retry-After`` header)."""

    http_status = 429

    def __init__(self, message: str, retry_after_s: float = 1.0, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class NotReady(RayDeployError):
    """The deployment exists but cannot answer yet."""

    http_status = 503


class ModelFailed(RayDeployError):
    """The model itself raised while predicting."""

    http_status = 500


class RequestTimeout(RayDeployError):
    """The model took longer than the deployment's ``request_timeout_s``."""

    http_status = 504


class DeploymentFailed(RayDeployError):
    """A deployment could not start (its replica raised, or it never became healthy)."""


class InsufficientResources(DeploymentFailed):
    """The cluster can never satisfy the resources a replica asks for."""


class IntegrityError(DeploymentFailed):
    """A model version's artifacts do not match the digest recorded when it was registered (tampered or
    corrupted in the artifact store); nothing of them is unpickled. Re-register the model."""


class ClusterError(RayDeployError):
    """The Ray cluster could not be reached or started."""

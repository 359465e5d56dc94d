"""Admission on the request path: the one place that decides whether a request may run.

Every request passes :meth:`Guard.admit` before its route runs, so API keys, scopes and rate limits
(the security work) plug in here without touching the ingress. Today it admits everything.

Example:
    >>> Guard().admit(Route("infer"), {})     # no error: admitted
"""

from __future__ import annotations

from collections.abc import Mapping

from ray_deploy.dataplane.routes import Route


class Guard:
    """Decides admission of one request from its route and headers; raises a 4xx error to refuse."""

    def admit(self, route: Route, headers: Mapping[str, str]) -> None:
        """Admit or refuse (by raising a :class:`~ray_deploy.errors.RayDeployError`) one request."""
        return None

"""The project's API key for tests that call the data plane over HTTP, as a user's script does.

Example:
    >>> requests.post(f"{dep.url}/predict", json=body, headers=auth(), timeout=30)
"""

from __future__ import annotations

import functools

import ray_deploy


@functools.cache
def auth() -> dict[str, str]:
    """``{"Authorization": "Bearer <the project key>"}`` (the session cluster's project home)."""
    return ray_deploy.auth_headers()

"""The project's API key for tests that call the data plane over HTTP, as a user's script does.

Example:
    >>> requests.post(f"{dep.url}/predict", json=body, headers=auth(), timeout=30)
"""

from __future__ import annotations

import functools

import ray_deploy


def auth() -> dict[str, str]:
    """A new ``{"Authorization": "Bearer <the project key>"}`` on every call: clients such as tritonclient add
    their own entries to the headers they are given."""
    return dict(_project_headers())


@functools.cache
def _project_headers() -> dict[str, str]:
    return ray_deploy.auth_headers()

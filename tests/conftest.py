"""Test-wide settings: the tests use their own ports and home, never the user's cluster or store."""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="ray_deploy_tests_")
# Set before anything reads them; subprocesses (CLI, demo) inherit them.
os.environ["RAY_DEPLOY_HOME"] = _HOME
os.environ["RAY_DEPLOY_RAY_PORT"] = os.environ.get("RAY_DEPLOY_TEST_RAY_PORT", "6400")
os.environ["RAY_DEPLOY_HTTP_PORT"] = os.environ.get("RAY_DEPLOY_TEST_HTTP_PORT", "8100")
os.environ["RAY_DEPLOY_DASHBOARD_PORT"] = os.environ.get("RAY_DEPLOY_TEST_DASHBOARD_PORT", "8300")
os.environ.pop("RAY_ADDRESS", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.setdefault("PYTHONUNBUFFERED", "1")

"""The curated public API stays complete, and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import ray_deploy


def test_all_names_exist_and_public_objects_are_listed() -> None:
    for name in ray_deploy.__all__:
        assert hasattr(ray_deploy, name), name
    public = {n for n in vars(ray_deploy) if not n.startswith("_") and n not in {"annotations"}} | set(ray_deploy._LAZY)
    modules = {n for n in public if type(getattr(ray_deploy, n)).__name__ == "module"}
    assert public - modules == set(ray_deploy.__all__) - {"__version__"}


def test_import_does_not_load_heavy_libraries() -> None:
    heavy = "('ray', 'mlflow', 'torch', 'shap', 'sklearn', 'pandas', 'fairlearn')"
    code = f"import sys, ray_deploy; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_errors_carry_http_status() -> None:
    assert ray_deploy.SchemaMismatch("x").http_status == 422
    assert ray_deploy.ModelNotFound("x").to_json() == {"error": "x"}
    assert issubclass(ray_deploy.InsufficientResources, ray_deploy.DeploymentFailed)

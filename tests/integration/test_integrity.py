"""A model version whose artifacts were changed in the MLflow store after registration is refused by the replica
before it unpickles anything; the deploy fails naming the integrity check, and the old version keeps serving."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LinearRegression

import ray_deploy
from ray_deploy import registry
from ray_deploy.integrity import DIGEST_TAG, artifact_digest

X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [2.0, 1.0]])
ROW = [[1.0, 1.0]]


def _stored_artifacts(name: str, version: str) -> Path:
    """The version's artifact folder in the test's local MLflow artifact store."""
    uri = MlflowClient().get_model_version_download_uri(name, version)
    assert uri.startswith("file://"), f"the test store keeps artifacts in a local folder, not {uri}"
    return Path(uri.removeprefix("file://"))


class _Bomb:
    """Unpickling it writes a marker file: proof of whether the tampered artifact was unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (Path.write_text, (Path(self.marker), "unpickled"))  # type: ignore[return-value]


def test_tampered_artifact_fails_the_deploy_and_the_old_version_keeps_serving(
    cleanup: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cleanup.append("tampered")
    first = LinearRegression().fit(X, X @ [1.0, 2.0])
    dep = ray_deploy.deploy(first, "tampered", sample_input=X[:2], num_cpus=0.1, show_progress=False)
    assert dep.version == "1"
    assert MlflowClient().get_model_version("tampered", "1").tags[DIGEST_TAG] == artifact_digest(
        _stored_artifacts("tampered", "1")
    )

    marker = tmp_path / "unpickled"
    register = registry.register

    def register_then_tamper(*args: Any, **kwargs: Any) -> str:
        """Someone with write access to the artifact store swaps the pickle right after registration."""
        version = register(*args, **kwargs)
        (_stored_artifacts("tampered", version) / "model.pkl").write_bytes(pickle.dumps(_Bomb(str(marker))))
        return version

    monkeypatch.setattr(registry, "register", register_then_tamper)
    second = LinearRegression().fit(X, X @ [3.0, 4.0])
    with pytest.raises(ray_deploy.DeploymentFailed) as err:
        ray_deploy.deploy(second, "tampered", sample_input=X[:2], num_cpus=0.1, show_progress=False, timeout_s=120)
    message = str(err.value)
    first_line = message.splitlines()[0]
    assert first_line.startswith("deployment 'tampered' version 2 failed to start"), message
    assert "version 1 keeps serving" in first_line, message
    assert "IntegrityError: artifact integrity check failed" in message and "Re-register the model" in message
    assert not marker.exists(), "the tampered pickle was unpickled"

    dep = ray_deploy.get("tampered")
    assert dep.version == "1"
    assert dep.predict(ROW).tolist() == pytest.approx([3.0])
    with pytest.raises(ray_deploy.RayDeployError, match="artifact integrity check failed"):
        dep.predict(ROW, version="2")  # asking for the tampered version by number is refused too
    assert not marker.exists()

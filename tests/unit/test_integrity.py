"""Artifact integrity: the digest function, the recorded tag, and a replica's refusal of a tampered artifact."""

from __future__ import annotations

import hashlib
import importlib.metadata
import pickle
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from ray_deploy.dataplane.served_model import (
    ArtifactSource,
    artifact_source,
    load_for_serving,
    load_verified,
    unmet_requirements,
    warn_environment_mismatches,
)
from ray_deploy.errors import DeploymentFailed, IntegrityError
from ray_deploy.integrity import DIGEST_TAG, artifact_digest, check_digest
from ray_deploy.registry import model_uri, register
from tests.unit.models import iris, sklearn_model


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


FILES = {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x80\x05weights", "sub/extra.txt": b"x"}


def test_digest_is_the_same_for_the_same_files_in_another_place(tmp_path: Path) -> None:
    first = _folder(tmp_path / "a", FILES)
    second = _folder(tmp_path / "b", dict(reversed(FILES.items())))  # written in another order
    assert artifact_digest(first) == artifact_digest(second)
    assert len(artifact_digest(first)) == 64


def test_empty_folder_is_the_hash_of_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty" / "nested").mkdir(parents=True)
    assert artifact_digest(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    "change",
    [
        {"model.pkl": b"\x80\x05weightz"},  # one byte changed
        {"model.pkl": b"\x80\x05weights\x00"},  # appended
        {"sub/other.txt": b""},  # an empty file added
        {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x80\x05weights", "sub/extra.txt": b"x", "sub/extra": b""},
    ],
)
def test_any_change_changes_the_digest(tmp_path: Path, change: dict[str, bytes]) -> None:
    original = artifact_digest(_folder(tmp_path / "a", FILES))
    assert artifact_digest(_folder(tmp_path / "b", {**FILES, **change})) != original


def test_renaming_or_moving_bytes_between_files_changes_the_digest(tmp_path: Path) -> None:
    original = artifact_digest(_folder(tmp_path / "a", {"a": b"12", "b": b"3"}))
    assert artifact_digest(_folder(tmp_path / "b", {"a": b"1", "b": b"23"})) != original
    assert artifact_digest(_folder(tmp_path / "c", {"a": b"12", "c": b"3"})) != original


def test_missing_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no artifact folder"):
        artifact_digest(tmp_path / "absent")


def test_mismatch_names_version_both_digests_and_what_to_do() -> None:
    check_digest("iris", "3", "AB" * 32, "ab" * 32)  # same digest, other case: fine
    with pytest.raises(IntegrityError) as err:
        check_digest("iris", "3", "a" * 64, "b" * 64)
    message = str(err.value)
    assert "'iris' version 3" in message and "a" * 64 in message and "b" * 64 in message
    assert "Re-register the model" in message
    assert isinstance(err.value, DeploymentFailed) and err.value.http_status == 500


class _Bomb:
    """Unpickling this writes a marker file: proof that a tampered artifact was (or was not) unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (self.marker, "unpickled"))  # type: ignore[return-value]


def _stored_artifacts(name: str, version: str) -> Path:
    uri = MlflowClient().get_model_version_download_uri(name, version)
    return Path(uri.removeprefix("file://"))


def test_registration_records_the_digest_of_the_stored_artifacts(mlflow_store: str) -> None:
    X, _ = iris()
    version = register(sklearn_model(), "sklearn", "iris", sample_input=X[:5])
    tags = MlflowClient().get_model_version("iris", version).tags
    assert tags[DIGEST_TAG] == artifact_digest(_stored_artifacts("iris", version))


def test_uri_registration_records_the_digest_too(mlflow_store: str) -> None:
    X, _ = iris()
    first = register(sklearn_model(), "sklearn", "iris", sample_input=X[:5])
    copy = register(model_uri("iris", first), "uri", "copy")
    client = MlflowClient()
    assert (
        client.get_model_version("copy", copy).tags[DIGEST_TAG]
        == client.get_model_version("iris", first).tags[DIGEST_TAG]
    )


def test_a_tampered_artifact_is_refused_before_it_is_unpickled(mlflow_store: str, tmp_path: Path) -> None:
    X, _ = iris()
    version = register(sklearn_model(), "sklearn", "iris", sample_input=X[:5])
    marker = tmp_path / "marker"
    stored = _stored_artifacts("iris", version) / "model.pkl"
    stored.write_bytes(pickle.dumps(_Bomb(marker)))
    with pytest.raises(IntegrityError, match=r"'iris' version 1 do not match the digest") as err:
        load_for_serving(model_uri("iris", version), kind="sklearn")
    assert err.value.details["expected_sha256"] != err.value.details["actual_sha256"]
    assert not marker.exists()


def test_a_version_registered_elsewhere_is_trusted_on_first_use_then_checked(mlflow_store: str) -> None:
    X, _ = iris()
    model = sklearn_model()
    version = register(model, "sklearn", "iris", sample_input=X[:5])
    client = MlflowClient()
    recorded = client.get_model_version("iris", version).tags[DIGEST_TAG]
    client.delete_model_version_tag("iris", version, DIGEST_TAG)  # as if registered outside ray-deploy
    served = load_for_serving(model_uri("iris", version))
    assert served.predict(X[:3]).tolist() == model.predict(X[:3]).tolist()
    assert client.get_model_version("iris", version).tags[DIGEST_TAG] == recorded
    (_stored_artifacts("iris", version) / "MLmodel").write_text("tampered after the first use\n")
    with pytest.raises(IntegrityError):
        load_for_serving(model_uri("iris", version))


def test_mlflows_own_models_uri_loader_on_a_local_store_does_not_break_the_check(mlflow_store: str) -> None:
    import mlflow

    X, _ = iris()
    model = sklearn_model()
    version = register(model, "sklearn", "iris", sample_input=X[:5])
    mlflow.pyfunc.load_model(model_uri("iris", version))  # as a notebook would: writes registered_model_meta
    assert (_stored_artifacts("iris", version) / "registered_model_meta").exists()
    assert load_for_serving(model_uri("iris", version)).predict(X[:3]).tolist() == model.predict(X[:3]).tolist()


def test_control_plane_loaders_verify_too(mlflow_store: str, tmp_path: Path) -> None:
    X, _ = iris()
    model = sklearn_model()
    version = register(model, "sklearn", "iris", sample_input=X[:5])
    assert load_verified(model_uri("iris", version), "sklearn").predict(X[:3]).tolist() == model.predict(X[:3]).tolist()
    assert not (_stored_artifacts("iris", version) / "registered_model_meta").exists()  # the store is not written
    marker = tmp_path / "marker"
    (_stored_artifacts("iris", version) / "model.pkl").write_bytes(pickle.dumps(_Bomb(marker)))
    with pytest.raises(IntegrityError):
        load_verified(model_uri("iris", version), "sklearn")
    assert not marker.exists()


def test_a_replica_given_the_source_loads_and_verifies_without_the_registry(mlflow_store: str, tmp_path: Path) -> None:
    import mlflow

    X, _ = iris()
    model = sklearn_model()
    version = register(model, "sklearn", "iris", sample_input=X[:5])
    source = artifact_source("iris", version)
    assert source is not None and source.sha256 == MlflowClient().get_model_version("iris", version).tags[DIGEST_TAG]
    unreachable = f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"  # any registry access now fails
    mlflow.set_tracking_uri(unreachable)
    mlflow.set_registry_uri(unreachable)
    served = load_for_serving(model_uri("iris", version), "sklearn", source)
    assert served.predict(X[:3]).tolist() == model.predict(X[:3]).tolist()
    with pytest.raises(IntegrityError):  # the source's digest is the one checked
        load_for_serving(model_uri("iris", version), "sklearn", ArtifactSource(source.uri, "0" * 64))


def test_a_version_without_a_recorded_digest_has_no_source(mlflow_store: str) -> None:
    X, _ = iris()
    version = register(sklearn_model(), "sklearn", "iris", sample_input=X[:5])
    MlflowClient().delete_model_version_tag("iris", version, DIGEST_TAG)
    assert artifact_source("iris", version) is None


def test_environment_mismatches_are_logged_after_loading(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "MLmodel").write_text("flavors:\n  python_function:\n    python_version: 3.6.0\n")
    (tmp_path / "requirements.txt").write_text("# pinned at training\n-r extra.txt\nnumpy==0.0.1\n")
    with caplog.at_level("WARNING"):
        assert warn_environment_mismatches(str(tmp_path)) == ["numpy==0.0.1"]
    assert "saved with Python 3.6.0" in caplog.text
    assert f"numpy==0.0.1 (installed: {np.__version__})" in caplog.text


def test_unmet_requirements_name_what_is_installed_and_skip_what_does_not_apply() -> None:
    torch_version = importlib.metadata.version("torch")  # a local version (2.x.y+cpu) meets ==2.x.y
    met = [f"numpy=={np.__version__}", f"torch=={torch_version.split('+')[0]}", "mlflow>=3", "pandas"]
    skipped = ["./wheels/local.whl", "https://example.org/x.whl", "numpy==0.0.1; python_version < '3'"]
    unmet = ["numpy<1", "no-such-package-here>=1"]
    assert unmet_requirements(met + skipped + unmet) == [
        f"numpy<1 (installed: {np.__version__})",
        "no-such-package-here>=1 (not installed)",
    ]

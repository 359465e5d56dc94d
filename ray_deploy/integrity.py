"""Artifact integrity: the SHA-256 digest of a model version's artifact folder, and the check against it.

The digest covers every file under the folder: its path relative to the folder (``/``-separated) and its bytes,
in sorted path order, each framed by its length, so renaming, adding, removing or changing any file changes it.
It is recorded as the model version tag :data:`DIGEST_TAG` when ray-deploy registers a version, and a replica
recomputes it over the artifacts it downloaded before anything in them is unpickled.

Pure: only hashlib and the file system; replica code imports it.

Example:
    >>> digest = artifact_digest(Path("/tmp/iris-model"))
    >>> len(digest)
    64
    >>> check_digest("iris", "3", expected=digest, actual=artifact_digest(Path("/tmp/iris-model")))
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ray_deploy.errors import IntegrityError

DIGEST_TAG = "ray_deploy.artifact_sha256"
_CHUNK = 1 << 20


REFERENCE_DIR = "ray_deploy_reference"  # reference.ARTIFACT_DIR
# MLflow writes this YAML (the registered name and version) into a version's folder whenever a ``models:/`` URI is
# loaded from a local store without a destination, e.g. ``mlflow.pyfunc.load_model("models:/iris/3")`` in a
# notebook; it is never unpickled.
MLFLOW_META_FILE = "registered_model_meta"  # mlflow.store.artifact.models_artifact_repo.REGISTERED_MODEL_META_FILE_NAME


def _counts(relative: str) -> bool:
    return relative != MLFLOW_META_FILE and not relative.startswith(f"{REFERENCE_DIR}/")


def artifact_digest(folder: Path) -> str:
    """The hex SHA-256 of every file under ``folder`` (relative paths and bytes, sorted by path).

    Empty folders do not count; a symbolic link counts as the file it points to. Two things that change after
    registration and are never unpickled do not count either: the version's reference data
    (``ray_deploy_reference/``, Parquet that labels are added to) and MLflow's own ``registered_model_meta``.

    Example:
        >>> artifact_digest(Path("/tmp/empty"))
        'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no artifact folder at {root}")
    files = sorted(
        relative
        for dirpath, _, names in os.walk(root)
        for name in names
        if _counts(relative := Path(dirpath, name).relative_to(root).as_posix())
    )
    digest = hashlib.sha256()
    for relative in files:
        path_bytes = relative.encode("utf-8")
        digest.update(len(path_bytes).to_bytes(8, "big") + path_bytes)
        path = root / relative
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as source:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def check_digest(name: str, version: str, expected: str, actual: str) -> None:
    """Raise :class:`IntegrityError` naming the version and both digests when they differ.

    Example:
        >>> check_digest("iris", "3", expected="ab12...", actual="ab12...")  # equal: nothing happens
    """
    if expected.strip().lower() == actual.lower():
        return
    raise IntegrityError(
        f"artifact integrity check failed: the artifacts of model {name!r} version {version} do not match the "
        f"digest recorded when it was registered (tag {DIGEST_TAG}: expected sha256 {expected}, got {actual}); "
        "they were changed in the artifact store after registration, so nothing of them was loaded. Re-register "
        "the model (deploy it again from its source) and check who can write to the MLflow artifact store",
        version=str(version),
        expected_sha256=expected,
        actual_sha256=actual,
    )

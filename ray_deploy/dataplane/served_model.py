"""What a replica needs from the registry: load a version, list versions, read and repair aliases.

The model kind is resolved once at deploy time and arrives in Serve's ``user_config``; the loader uses it
instead of guessing again.

Integrity: a version's artifacts are downloaded to a local folder and their digest
(:func:`ray_deploy.integrity.artifact_digest`) is compared with the one recorded at registration before anything
in them is unpickled; a mismatch raises :class:`IntegrityError`. A version registered outside ray-deploy (no
recorded digest) is trusted on first use: its digest is recorded then, and checked from then on.

A deploy resolves the served version's :class:`ArtifactSource` (where its artifacts are stored and their recorded
digest) and sends it in the ``user_config``: a starting replica then downloads and verifies without opening the
registry's store (importing MLflow's SQL store is about a second of a replica's start).

Example:
    >>> served = load_for_serving(model_uri("iris", "3"), kind="sklearn")
    >>> served.predict(X[:2])
    array([0, 0])
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ray_deploy.dataplane import heap
from ray_deploy.dataplane.outputs import describe_outputs
from ray_deploy.dataplane.schema import InputSchema
from ray_deploy.errors import ConfigError, ModelNotFound, NotReady
from ray_deploy.integrity import DIGEST_TAG, artifact_digest, check_digest

log = logging.getLogger("ray.serve")

CHAMPION = "champion"


@dataclass
class ServedModel:
    """A model loaded in a replica: ``predict`` takes a batch and returns one output row per input row."""

    uri: str
    flavor: Literal["torch", "pyfunc"]
    impl: Any
    signature: Any = None
    device: str = "cpu"
    path: str = ""
    """The verified local copy of the version's artifacts."""

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Run the model; torch models run under ``torch.inference_mode()`` on the replica's device.

        ``params`` (V2 request parameters) reach a pyfunc model whose signature declares params; other
        models ignore them.
        """
        if self.flavor == "torch":
            import torch

            array = np.asarray(data.to_numpy() if hasattr(data, "to_numpy") else data)
            if array.dtype == np.float64:
                array = array.astype(np.float32)
            with torch.inference_mode():
                out = self.impl(torch.as_tensor(array, device=self.device))
            return out.detach().cpu().numpy()
        if params and self.signature is not None and getattr(self.signature, "params", None) is not None:
            return self.impl.predict(data, params=params)
        return self.impl.predict(data)


@dataclass
class Loaded:
    """A served version with its input schema (checked on every request)."""

    version: str
    model: ServedModel
    schema: InputSchema | None = field(init=False)
    outputs: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        signature = self.model.signature
        self.schema = InputSchema.from_signature(signature)
        self.outputs = describe_outputs(signature.outputs if signature is not None else None)


@dataclass(frozen=True)
class ArtifactSource:
    """Where a registered version's artifacts are stored (a download URI) and their recorded sha256 digest.

    Example:
        >>> artifact_source("iris", "3")
        ArtifactSource(uri='/home/me/.ray_deploy/artifacts/1/models/m-1f2e/artifacts', sha256='9b1c...')
    """

    uri: str
    sha256: str


def artifact_source(name: str, version: str) -> ArtifactSource | None:
    """The stored artifacts of ``name`` version ``version`` with their recorded digest; None for a version without
    one (registered outside ray-deploy: the replica then trusts it on first use, see :func:`fetch_verified`)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    digest = (client.get_model_version(name, version).tags or {}).get(DIGEST_TAG)
    return None if digest is None else ArtifactSource(client.get_model_version_download_uri(name, version), digest)


def load_for_serving(uri: str, kind: str | None = None, source: ArtifactSource | None = None) -> ServedModel:
    """Load a registered model after verifying its artifacts; torch models go to the GPU when this process was
    given one.

    ``uri`` is ``models:/<name>/<version>``. ``kind`` is the family resolved at deploy time (``torch`` or anything
    else for pyfunc); None reads it from the model's flavors (for versions other than the one deployed). ``source``
    (resolved at deploy time) spares the registry look-up.

    Example:
        >>> load_for_serving("models:/net/1", kind="torch").device
        'cpu'
    """
    import mlflow

    name, version = _name_version(uri)
    local = str(fetch_verified(name, version, source=source))
    # the MLmodel file: YAML, nothing unpickled (get_model_info would also open the tracking store)
    info = mlflow.models.Model.load(os.path.join(local, "MLmodel"))
    if kind is None:
        kind = "torch" if "pytorch" in info.flavors else "pyfunc"
    if kind == "torch":
        import torch

        device = "cuda" if _has_gpu() and torch.cuda.is_available() else "cpu"
        # a whole pickled module (not a state dict), loaded only after the digest check above
        module = mlflow.pytorch.load_model(local, map_location=device)
        module.eval()
        return ServedModel(uri, "torch", module, info.signature, device, local)
    # MLflow's environment checks read every installed package's metadata (~0.5 s); ours read only the model's
    # requirements, once the version serves: see warn_environment_mismatches
    model = mlflow.pyfunc.load_model(local, suppress_warnings=True)
    return ServedModel(uri, "pyfunc", model, info.signature, path=local)


def warn_environment_mismatches(path: str) -> list[str]:
    """Log when this process's Python or packages differ from those a model version recorded; returns the
    requirements checked.

    Example:
        >>> warn_environment_mismatches("/tmp/ray-deploy-iris-v3-x1y2/")
        ['mlflow==3.1.0', 'scikit-learn==1.7.0']
    """
    from mlflow.models import Model

    folder = Path(path)
    recorded = (Model.load(folder / "MLmodel").flavors.get("python_function") or {}).get("python_version")
    if recorded is not None and recorded.split(".")[:2] != platform.python_version().split(".")[:2]:
        log.warning(
            "the model was saved with Python %s and this replica runs Python %s; it may not load or predict the same",
            recorded,
            platform.python_version(),
        )
    file = folder / "requirements.txt"
    lines = file.read_text().splitlines() if file.exists() else []
    requirements = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith(("#", "-"))]
    unmet = unmet_requirements(requirements)
    if unmet:
        log.warning(
            "this replica's packages differ from those the model was saved with: %s; install the model's "
            "requirements.txt (mlflow.pyfunc.get_model_dependencies) where it serves",
            "; ".join(unmet),
        )
    return requirements


def unmet_requirements(requirements: list[str]) -> list[str]:
    """The requirements (``pip`` lines) this Python environment does not meet, each with what is installed.

    It reads only the named packages' metadata (microseconds each; MLflow's own check maps every installed
    package's files, ~0.3 s holding the GIL of a replica that already serves). Lines that are not a package name
    with version specifiers (paths, URLs) and lines whose environment marker does not apply are skipped.

    Example:
        >>> unmet_requirements(["no-such-package>=1", "./local.whl", "pandas; python_version < '3'"])
        ['no-such-package>=1 (not installed)']
    """
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import InvalidRequirement, Requirement

    unmet = []
    for line in requirements:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            unmet.append(f"{line} (not installed)")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{line} (installed: {installed})")
    return unmet


def _check_environment_soon(model: ServedModel) -> None:
    """Run :func:`warn_environment_mismatches` in a worker thread, off the load's path; a failure is logged."""

    def check() -> None:
        try:
            warn_environment_mismatches(model.path)
        except Exception:  # a check of the environment must never affect serving
            log.warning("could not compare %s's recorded environment with this replica's", model.uri, exc_info=True)

    asyncio.get_running_loop().run_in_executor(None, check)


def fetch_verified(name: str, version: str, dst: Path | None = None, source: ArtifactSource | None = None) -> Path:
    """Download the artifacts of ``name`` version ``version`` into a new local folder and verify them.

    Raises :class:`IntegrityError` (and removes the download) when their digest differs from the version's
    ``ray_deploy.artifact_sha256`` tag. A version without that tag (registered outside ray-deploy) is trusted on
    first use: the digest of what was downloaded is recorded as its tag, and every later load is checked against
    it. The folder is left for the caller (a loaded model may read its files later, as MLflow's own loader
    allows). With a ``source`` (what the deployer read from the registry) the registry is not opened.

    Example:
        >>> fetch_verified("iris", "3").joinpath("MLmodel").exists()
        True
    """
    if source is not None:
        return _checked(name, version, source.sha256, _download(source.uri, name, version, dst))
    from mlflow import MlflowClient

    client = MlflowClient()
    expected = (client.get_model_version(name, version).tags or {}).get(DIGEST_TAG)
    folder = download_version(name, version, dst)
    if expected is not None:
        return _checked(name, version, expected, folder)
    actual = artifact_digest(folder)
    client.set_model_version_tag(name, version, DIGEST_TAG, actual)
    log.warning(
        "%s version %s had no recorded artifact digest (registered outside ray-deploy); trusting it on first "
        "use and recording sha256 %s",
        name,
        version,
        actual,
    )
    return folder


def _checked(name: str, version: str, expected: str, folder: Path) -> Path:
    """``folder`` when its digest is ``expected``; otherwise it is removed and :class:`IntegrityError` raised."""
    try:
        check_digest(name, version, expected, artifact_digest(folder))
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def load_verified(uri: str, flavor: Literal["pyfunc", "sklearn", "pytorch"] = "pyfunc", **options: Any) -> Any:
    """Load ``models:/<name>/<version>`` with one of MLflow's flavor loaders, after :func:`fetch_verified`.

    Every loader of a registered version goes through this (or :func:`load_for_serving`): nothing is unpickled
    from artifacts whose digest does not match, and the artifact store itself is never written to (MLflow's own
    ``models:/`` loader adds a file to a local store's folder).

    Example:
        >>> load_verified("models:/iris/3", "sklearn").predict(X[:2])
        array([0, 0])
    """
    import importlib

    name, version = _name_version(uri)
    local = str(fetch_verified(name, version))
    return importlib.import_module(f"mlflow.{flavor}").load_model(local, **options)


def download_version(name: str, version: str, dst: Path | None = None) -> Path:
    """Copy a version's stored artifacts (its download URI, not ``models:/``, which adds a metadata file of its
    own) into ``dst`` or a new temporary folder, without a progress bar; returns the folder."""
    from mlflow import MlflowClient

    return _download(MlflowClient().get_model_version_download_uri(name, version), name, version, dst)


def _download(uri: str, name: str, version: str, dst: Path | None) -> Path:
    import mlflow

    folder = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix=f"ray-deploy-{name}-v{version}-"))
    folder.mkdir(parents=True, exist_ok=True)
    with _no_progress_bar():
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(folder)))


@contextlib.contextmanager
def _no_progress_bar() -> Any:
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _name_version(uri: str) -> tuple[str, str]:
    """``models:/iris/3`` -> ``("iris", "3")``; the only URIs replicas load are registry versions."""
    name, _, version = uri.removeprefix("models:/").rpartition("/")
    if not uri.startswith("models:/") or not name or not version.isdigit():
        raise ConfigError(f"replicas load registered versions only ('models:/<name>/<version>'), not {uri!r}")
    return name, version


def _has_gpu() -> bool:
    try:
        import ray

        return bool(ray.is_initialized() and ray.get_gpu_ids())
    except Exception:  # outside a Ray worker there is no GPU assignment to ask about
        return False


def model_uri(name: str, version: str) -> str:
    """The registry URI a replica loads, e.g. ``models:/iris/3``."""
    return f"models:/{name}/{version}"


def versions(name: str) -> list[str]:
    """All registered versions of ``name``, oldest first.

    Example:
        >>> versions("iris")
        ['1', '2']
    """
    from mlflow import MlflowClient

    found = MlflowClient().search_model_versions(f"name = '{_quoted(name)}'")
    return sorted((str(v.version) for v in found), key=int)


def check_version(name: str, version: str, known: list[str] | None = None) -> None:
    """Raise :class:`ModelNotFound` naming the known versions when ``version`` is not registered (``known``: the
    registered versions when already read, else read here)."""
    known = versions(name) if known is None else known
    if version not in known:
        raise ModelNotFound(f"model {name!r} has no version {version!r}; versions: {known}")


def aliases(name: str) -> dict[str, str]:
    """The registered model's aliases, alias -> version (empty when the model is not registered).

    Example:
        >>> aliases("iris")
        {'champion': '2'}
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        model = MlflowClient().get_registered_model(name)
    except MlflowException:
        return {}
    return {str(alias): str(version) for alias, version in (model.aliases or {}).items()}


def converge_champion(name: str, serving: str | None) -> dict[str, str]:
    """Make the ``champion`` alias name the version that serves; returns the aliases after the repair.

    Serve's ``user_config`` is the truth of what serves; a deploy interrupted between rolling out and
    setting the alias leaves the alias behind, and the next status read or deploy repairs it.

    Example:
        >>> converge_champion("iris", "3")["champion"]
        '3'
    """
    found = aliases(name)
    if serving is None or found.get(CHAMPION) == serving:
        return found
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, CHAMPION, serving)
    log.warning("%s: the champion alias named %s but %s serves; repaired", name, found.get(CHAMPION), serving)
    return {**found, CHAMPION: serving}


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")


class VersionPool:
    """The version a replica serves plus the last few others asked for by ``/versions/<v>/...``.

    Example:
        >>> pool = VersionPool("iris")
        >>> await pool.serve("3", kind="sklearn")
        >>> (await pool.get(None)).version
        '3'
    """

    def __init__(self, name: str, others_kept: int = 2) -> None:
        self.name = name
        self.current: Loaded | None = None
        self._others: OrderedDict[str, Loaded] = OrderedDict()
        self._others_kept = others_kept
        self._registry_read = False

    async def serve(self, version: str, kind: str, source: ArtifactSource | None = None) -> None:
        """Make ``version`` the one that serves, loading it (from ``source`` when given) unless it already does."""
        if self.current is not None and self.current.version == version:
            return
        first = self.current is None
        model = await asyncio.to_thread(load_for_serving, model_uri(self.name, version), kind, source)
        self.current = Loaded(version, model)
        log.info("%s: serving version %s (%s on %s)", self.name, version, model.flavor, model.device)
        if not first:  # the first version loads before Serve freezes the new replica's heap
            heap.settle()
        _check_environment_soon(model)

    async def registered(self) -> list[str]:
        """Every registered version of the model, oldest first, read from the registry in a worker thread.

        Example:
            >>> await VersionPool("iris").registered()
            ['1', '2', '3']
        """
        found = await asyncio.to_thread(versions, self.name)
        if not self._registry_read:  # the first read loaded MLflow's registry client into this replica
            self._registry_read = True
            heap.settle()
        return found

    async def get(self, version: str | None) -> Loaded:
        """The loaded ``version`` (None: the one that serves); other versions load on first use."""
        current = self.current
        if current is None:
            raise NotReady(f"model {self.name!r} is still loading; retry shortly")
        if version is None or version == current.version:
            return current
        if version in self._others:
            self._others.move_to_end(version)
            return self._others[version]
        check_version(self.name, version, await self.registered())
        uri = model_uri(self.name, version)
        model = await asyncio.to_thread(load_for_serving, uri)
        heap.settle()
        _check_environment_soon(model)
        loaded = self._others[version] = Loaded(version, model)
        while len(self._others) > self._others_kept:
            self._others.popitem(last=False)
        return loaded

"""MLflow as the registry: one registered model per deployment, a version per deploy, aliases.

Example:
    >>> use_mlflow(Settings.from_env())
    >>> version = register(model, "iris", sample_input=X[:5])
    >>> set_champion("iris", version)
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ray_deploy.config import Settings
from ray_deploy.dataplane.served_model import CHAMPION, check_version, download_version, model_uri, versions
from ray_deploy.errors import ConfigError
from ray_deploy.integrity import DIGEST_TAG, artifact_digest
from ray_deploy.package import ModelKind, PredictMethod, deploy_tags, log_model

log = logging.getLogger(__name__)

EXPERIMENT = "ray-deploy"
__all__ = [
    "CHAMPION",
    "check_version",
    "model_uri",
    "record_digest",
    "register",
    "set_champion",
    "use_mlflow",
    "versions",
]


def use_mlflow(settings: Settings) -> str:
    """Point this process's MLflow at the project store; returns the tracking URI."""
    import mlflow

    if settings.mlflow_uri.startswith("sqlite:///"):
        settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_registry_uri(settings.mlflow_uri)
    return settings.mlflow_uri


def _experiment_id(settings: Settings) -> str:
    import mlflow

    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = settings.artifact_root.as_uri() if settings.mlflow_uri.startswith("sqlite:") else None
    return str(mlflow.create_experiment(EXPERIMENT, artifact_location=location))


def register(
    model: Any, kind: ModelKind, name: str, sample_input: Any = None, predict_method: PredictMethod = "predict"
) -> str:
    """Log (or reference) ``model`` and register it as a new version of ``name``; returns the version.

    Example:
        >>> register(fitted, "sklearn", "iris", sample_input=X[:5])
        '1'
    """
    import mlflow

    settings = Settings.from_env()
    use_mlflow(settings)
    tags = {**deploy_tags(kind, name), "ray_deploy.predict_method": predict_method}
    if kind == "uri":
        source = _resolve_alias(model)
        _check_uri_exists(source)
        version = mlflow.register_model(source, name, tags={**tags, "ray_deploy.source": model})
        return record_digest(name, str(version.version))
    with mlflow.start_run(experiment_id=_experiment_id(settings), run_name=f"deploy-{name}") as run:
        mlflow.set_tags(tags)
        uri = log_model(model, kind, sample_input, predict_method)
        log.info("logged %s model for %s in run %s", kind, name, run.info.run_id)
    version = mlflow.register_model(uri, name, tags=tags)
    return record_digest(name, str(version.version))


def record_digest(name: str, version: str) -> str:
    """Record the SHA-256 of a version's stored artifacts as its ``ray_deploy.artifact_sha256`` tag (replicas
    verify it before loading); returns ``version``.

    The digest is taken over the artifacts as stored (downloaded from the version's download URI, as a replica
    does), so whatever registration path made the version, the replica's check compares like with like.

    Example:
        >>> record_digest("iris", "3")
        '3'
    """
    from mlflow import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="ray-deploy-digest-"))
    try:
        digest = artifact_digest(download_version(name, version, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    MlflowClient().set_model_version_tag(name, version, DIGEST_TAG, digest)
    log.info("%s version %s: artifact sha256 %s", name, version, digest)
    return version


def _resolve_alias(uri: str) -> str:
    """``models:/name@alias`` -> ``models:/name/<version>`` (register_model takes versions only)."""
    if not uri.startswith("models:/") or "@" not in uri:
        return uri
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name, alias = uri.removeprefix("models:/").split("@", 1)
    try:
        version = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise ConfigError(f"cannot resolve {uri!r}: {exc.message}") from None
    return f"models:/{name}/{version.version}"


def _check_uri_exists(uri: str) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.models.get_model_info(uri)
    except (MlflowException, OSError) as exc:
        raise ConfigError(f"cannot read the MLflow model {uri!r}: {exc}") from None


def set_champion(name: str, version: str) -> None:
    """Point the ``champion`` alias of ``name`` at ``version`` (the version that serves)."""
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, CHAMPION, version)


def versions_frame(name: str, serving: str | None) -> Any:
    """Every registered version of ``name`` as a DataFrame, oldest first: aliases, who and when deployed it,
    whether it serves, its lineage and what it was trained on (when known), and the metrics of its run.

    Example:
        >>> versions_frame("iris", "2")[["version", "aliases", "serving"]]
    """
    import pandas as pd
    from mlflow import MlflowClient

    use_mlflow(Settings.from_env())
    client = MlflowClient()
    aliases: dict[str, list[str]] = {}
    for alias, version in (client.get_registered_model(name).aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for info in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        tags = info.tags or {}
        metrics: dict[str, float] = {}
        if info.run_id:
            try:
                metrics = dict(client.get_run(info.run_id).data.metrics)
            except Exception:  # a run deleted from the tracking store: the version still lists
                metrics = {}
        rows.append(
            {
                "version": str(info.version),
                "aliases": sorted(aliases.get(str(info.version), [])),
                "serving": str(info.version) == serving,
                "created_at": pd.Timestamp(info.creation_timestamp, unit="ms", tz="UTC"),
                "deployed_by": tags.get("ray_deploy.deployed_by"),
                "model_kind": tags.get("ray_deploy.model_kind"),
                "parent_version": tags.get("ray_deploy.parent_version"),
                "trained_on": _trained_on(tags),
                "gate": tags.get("ray_deploy.gate"),
                "retrain_run": tags.get("ray_deploy.retrain_run"),
                "reference": "yes" if tags.get("ray_deploy.reference_run") else None,
                "run_id": info.run_id,
                **{f"metric.{k}": v for k, v in sorted(metrics.items())},
            }
        )
    return pd.DataFrame(rows)


def _trained_on(tags: dict[str, str]) -> str | None:
    """What a retrained version learned from, as its retrain recorded it: rows, content hash, captured time range.

    Example:
        >>> _trained_on({"ray_deploy.data_rows": "4300", "ray_deploy.data_hash": "f16e67e5...", ...})
        '4300 rows, sha256 f16e67e525e9, captured 2026-11-28 15:41:40..15:42:33 UTC'
    """
    rows = tags.get("ray_deploy.data_rows")
    if not rows:
        return None
    text = f"{rows} rows, sha256 {tags.get('ray_deploy.data_hash', '')[:12]}"
    since, _, until = tags.get("ray_deploy.data_range", "").partition("..")
    try:
        start, end = (datetime.fromtimestamp(float(t), timezone.utc) for t in (since, until))
    except ValueError:  # no captured rows: no time range
        return text
    return f"{text}, captured {start:%Y-%m-%d %H:%M:%S}..{end:%H:%M:%S} UTC"

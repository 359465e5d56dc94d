"""Reference data: what drift is measured against, stored with the model version in MLflow.

At deploy time the reference (``deploy(..., reference=X_train)``, else a ``sample_input`` of at least
:data:`MIN_REFERENCE_ROWS` rows) is cast by the version's signature exactly as a request would be, the model's
predictions on it are computed (for prediction drift), and both are logged as Parquet artifacts of the version's
run; a model-version tag points at them. The Monitor loads them when it starts or the version changes, so a
restarted Monitor measures against the same data.

Example:
    >>> frame, predictions = prepare_reference(clf, "sklearn", "iris", "3", X_train, "predict", DriftSpec())
    >>> save_reference("iris", "3", frame, predictions)
    >>> load_reference("iris", "3")[0].shape
    (120, 4)
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from ray_deploy.config import DriftSpec
from ray_deploy.errors import ConfigError

log = logging.getLogger(__name__)

MIN_REFERENCE_ROWS = 100
ARTIFACT_DIR = "ray_deploy_reference"
RUN_TAG = "ray_deploy.reference_run"


def choose_reference(reference: Any, sample_input: Any) -> Any:
    """The reference data to use: ``reference`` when given, else ``sample_input`` when it has enough rows.

    Example:
        >>> choose_reference(None, X[:5]) is None     # too few rows to measure drift against
        True
    """
    if reference is not None:
        if _rows(reference) < 2:
            raise ConfigError("reference needs at least 2 rows; pass the training data, e.g. reference=X_train")
        return reference
    if sample_input is not None and _rows(sample_input) >= MIN_REFERENCE_ROWS:
        return sample_input
    return None


def _rows(data: Any) -> int:
    try:
        return len(data)
    except TypeError:
        return 0


def prepare_reference(
    model: Any, kind: str, name: str, version: str, data: Any, predict_method: str, spec: DriftSpec
) -> tuple[Any, Any]:
    """Cast ``data`` by the version's signature (as a request would be) and predict on it.

    Returns ``(frame, predictions)``: a DataFrame of named columns (arrays give ``x0``, ``x1``, ...) and
    the model's outputs (None when the model cannot run here). More rows than ``spec.reference_rows`` are
    sampled uniformly (:func:`reference_rows` picks them, so labels can be picked alike).
    """
    import mlflow
    import numpy as np

    from ray_deploy.dataplane.capture import input_frame, output_array
    from ray_deploy.dataplane.schema import InputSchema
    from ray_deploy.registry import model_uri

    rows = _rows(data)
    keep = reference_rows(rows, spec)
    if keep is not None:
        data = data.iloc[keep] if hasattr(data, "iloc") else np.asarray(data)[keep]
    signature = mlflow.models.get_model_info(model_uri(name, version)).signature
    schema = InputSchema.from_signature(signature) or InputSchema()
    model_input = schema.from_python(data)
    frame = input_frame(model_input)
    if frame is None:
        raise ConfigError(
            "reference data must be a table (DataFrame or 2-D array) to measure drift against; "
            f"got {type(data).__name__} of {rows} rows"
        )
    try:
        predictions = output_array(_predict(model, kind, name, version, model_input, predict_method))
    except Exception as exc:  # prediction drift is then unavailable; input drift still works
        log.warning("the model could not predict on the reference data (%s); prediction drift is off", exc)
        predictions = None
    return frame.reset_index(drop=True), predictions


def reference_rows(rows: int, spec: DriftSpec) -> Any:
    """The row positions kept of a reference of ``rows`` rows (sorted), or None to keep them all.

    Example:
        >>> reference_rows(50, DriftSpec()) is None
        True
    """
    import numpy as np

    if rows <= spec.reference_rows:
        return None
    return np.sort(np.random.default_rng(0).choice(rows, spec.reference_rows, replace=False))


def reference_labels(labels: Any, rows: int, spec: DriftSpec) -> Any:
    """The labels of the reference rows kept (the training labels, for retraining), as a 1-D array.

    Raises:
        ConfigError: when there is not one label per reference row.

    Example:
        >>> reference_labels(y_train, len(X_train), DriftSpec())[:3]
        array([0, 2, 1])
    """
    import numpy as np

    values = np.asarray(labels.to_numpy() if hasattr(labels, "to_numpy") else labels)
    if values.ndim != 1 or len(values) != rows:
        raise ConfigError(
            f"reference_labels needs one label per reference row: got shape {values.shape} for {rows} rows"
        )
    keep = reference_rows(rows, spec)
    return values if keep is None else values[keep]


def _predict(model: Any, kind: str, name: str, version: str, model_input: Any, predict_method: str) -> Any:
    from ray_deploy.package import _run, with_predict_method

    if kind == "uri":
        from ray_deploy.dataplane.served_model import load_verified
        from ray_deploy.registry import model_uri

        return load_verified(model_uri(name, version)).predict(model_input)
    method = "predict_proba" if predict_method == "predict_proba" else "predict"
    return _run(with_predict_method(model, kind, method), kind, model_input, method)  # type: ignore[arg-type]


def save_reference(name: str, version: str, frame: Any, predictions: Any, labels: Any = None) -> None:
    """Log the reference (with predictions, and labels when known) as Parquet artifacts and tag the model version
    with their run."""
    import pandas as pd
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = client.get_model_version(name, version).run_id
    if not run_id:  # a version registered from elsewhere: keep the reference in a run of its own
        from ray_deploy.config import Settings
        from ray_deploy.registry import _experiment_id

        experiment = _experiment_id(Settings.from_env())
        run_id = client.create_run(experiment, run_name=f"reference-{name}-v{version}").info.run_id
        client.set_terminated(run_id)
    with tempfile.TemporaryDirectory() as folder:
        frame.to_parquet(Path(folder) / "inputs.parquet")
        if predictions is not None:
            columns = [f"p{i}" for i in range(predictions.shape[1])] if predictions.ndim == 2 else ["prediction"]
            pd.DataFrame(predictions.reshape(len(predictions), -1), columns=columns).to_parquet(
                Path(folder) / "predictions.parquet"
            )
        if labels is not None:
            pd.DataFrame({"label": list(labels)}).to_parquet(Path(folder) / "labels.parquet")
        client.log_artifacts(run_id, folder, ARTIFACT_DIR)
    client.set_model_version_tag(name, version, RUN_TAG, run_id)


def load_reference(name: str, version: str) -> tuple[Any, Any] | None:
    """The reference ``(frame, predictions)`` of a version, or None when it was deployed without one."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    tags = MlflowClient().get_model_version(name, version).tags or {}
    run_id = tags.get(RUN_TAG)
    if not run_id:
        return None
    folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=ARTIFACT_DIR))
    frame = pd.read_parquet(folder / "inputs.parquet")
    predictions = None
    if (folder / "predictions.parquet").exists():
        table = pd.read_parquet(folder / "predictions.parquet")
        predictions = table["prediction"].to_numpy() if list(table.columns) == ["prediction"] else table.to_numpy()
    return frame, predictions


def load_reference_labels(name: str, version: str) -> Any:
    """The labels of a version's reference rows (``deploy(reference_labels=...)``), or None when it has none."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    run_id = (MlflowClient().get_model_version(name, version).tags or {}).get(RUN_TAG)
    if not run_id:
        return None
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{ARTIFACT_DIR}/labels.parquet")
    except (MlflowException, OSError):
        return None
    return pd.read_parquet(path)["label"].to_numpy()

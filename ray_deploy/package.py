"""Wrapping models of every accepted kind into MLflow models (the deploy side; replicas load them in
:mod:`ray_deploy.dataplane.served_model`).

Accepted: a scikit-learn estimator or pipeline, a ``torch.nn.Module``, an MLflow model URI
(``runs:/``, ``models:/``), an ``mlflow.pyfunc.PythonModel``, or a plain Python callable.

Example:
    >>> from sklearn.linear_model import LogisticRegression
    >>> model_kind(LogisticRegression())
    'sklearn'
    >>> model_kind("models:/iris/3")
    'uri'
"""

from __future__ import annotations

import getpass
import platform
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Literal

import numpy as np

from ray_deploy.errors import ConfigError

ModelKind = Literal["sklearn", "torch", "pyfunc", "callable", "uri"]
PredictMethod = Literal["predict", "predict_proba"]
PREDICT_METHODS: tuple[str, ...] = ("predict", "predict_proba")
URI_SCHEMES = ("runs:/", "models:/")
_ARTIFACT = "model"


def model_kind(model: Any) -> ModelKind:
    """Classify what the user handed to ``deploy``, or raise a :class:`ConfigError` saying what works."""
    if isinstance(model, str):
        if model.startswith(URI_SCHEMES):
            return "uri"
        raise ConfigError(
            f"{model!r} is not an MLflow model URI; use 'runs:/<run_id>/<path>', 'models:/<name>/<version>' "
            "or 'models:/<name>@<alias>', or pass the model object itself"
        )
    mod = type(model).__module__
    if mod.startswith("sklearn") or _is_sklearn_estimator(model):
        return "sklearn"
    if "torch" in sys.modules and isinstance(model, sys.modules["torch"].nn.Module):
        return "torch"
    if "mlflow" in sys.modules and isinstance(model, sys.modules["mlflow"].pyfunc.PythonModel):
        return "pyfunc"
    if callable(model):
        return "callable"
    raise ConfigError(
        f"cannot deploy an object of type {type(model).__name__}; pass a scikit-learn estimator, "
        "a torch.nn.Module, an mlflow.pyfunc.PythonModel, a callable, or an MLflow model URI"
    )


def _is_sklearn_estimator(model: Any) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:
        return False
    return isinstance(model, BaseEstimator)


def as_numpy(data: Any) -> Any:
    """Tensors become ndarrays; DataFrames, ndarrays and lists pass through unchanged."""
    if hasattr(data, "detach") and hasattr(data, "cpu"):
        return data.detach().cpu().numpy()
    return data


class CallableModel:
    """An MLflow ``PythonModel`` around a plain callable (built lazily so mlflow is imported late)."""

    @staticmethod
    def wrap(fn: Callable[[Any], Any]) -> Any:
        import mlflow

        class _Callable(mlflow.pyfunc.PythonModel):  # type: ignore[misc, name-defined]
            def __init__(self, fn: Callable[[Any], Any]) -> None:
                self.fn = fn

            def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
                return self.fn(model_input)

        return _Callable(fn)


def check_predict_method(model: Any, kind: ModelKind, predict_method: str) -> PredictMethod:
    """Check ``predict_method`` for this model: ``predict_proba`` needs a scikit-learn classifier or a torch module.

    Example:
        >>> check_predict_method(LogisticRegression().fit(X, y), "sklearn", "predict_proba")
        'predict_proba'
    """
    if predict_method not in PREDICT_METHODS:
        raise ConfigError(f"predict_method={predict_method!r} is not one of {list(PREDICT_METHODS)}")
    if predict_method == "predict_proba":
        if kind == "sklearn" and not hasattr(model, "predict_proba"):
            raise ConfigError(
                f"predict_method='predict_proba' needs a classifier with predict_proba; {type(model).__name__} "
                "has none (for SVC pass probability=True), or deploy with predict_method='predict'"
            )
        if kind not in ("sklearn", "torch"):
            raise ConfigError(
                f"predict_method='predict_proba' applies to scikit-learn and torch models; a {kind} model returns "
                "what its own predict returns, so make it return probabilities there"
            )
    return "predict_proba" if predict_method == "predict_proba" else "predict"


def with_predict_method(model: Any, kind: ModelKind, predict_method: PredictMethod) -> Any:
    """The model to log: a torch module with ``predict_proba`` gets a softmax over its last axis (logits ->
    class probabilities); everything else is unchanged (scikit-learn uses MLflow's ``pyfunc_predict_fn``)."""
    if kind == "torch" and predict_method == "predict_proba":
        import torch

        return torch.nn.Sequential(model, torch.nn.Softmax(dim=-1))
    return model


def infer_signature(model: Any, kind: ModelKind, sample_input: Any, predict_method: PredictMethod = "predict") -> Any:
    """Infer an MLflow signature from ``sample_input`` (or, without one, from the model itself).

    Returns None when nothing can be inferred; such a model is served without input validation.
    """
    from mlflow.models import infer_signature as mlflow_infer
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    if sample_input is not None:
        sample = as_numpy(sample_input)
        output = as_numpy(_run(model, kind, sample_input, predict_method))
        return mlflow_infer(sample, output)
    if kind == "sklearn":
        names = getattr(model, "feature_names_in_", None)
        if names is not None:
            return ModelSignature(inputs=Schema([ColSpec("double", str(n)) for n in names]))
        n = getattr(model, "n_features_in_", None)
        if n is not None:
            return ModelSignature(inputs=Schema([TensorSpec(np.dtype("float64"), (-1, int(n)))]))
    if kind == "torch":
        first = _first_linear(model)
        if first is not None:
            return ModelSignature(inputs=Schema([TensorSpec(np.dtype("float32"), (-1, first))]))
    return None


def _first_linear(module: Any) -> int | None:
    import torch

    for sub in module.modules():
        if isinstance(sub, torch.nn.Linear):
            return int(sub.in_features)
    return None


def _run(model: Any, kind: ModelKind, sample: Any, predict_method: PredictMethod = "predict") -> Any:
    if kind == "sklearn":
        return getattr(model, predict_method)(sample)
    if kind == "torch":
        import torch

        tensor = sample if isinstance(sample, torch.Tensor) else torch.as_tensor(np.asarray(sample))
        with torch.inference_mode():
            return model(tensor)
    if kind == "pyfunc":
        return model.predict(None, sample)
    return model(sample)


def deploy_tags(kind: ModelKind, name: str) -> dict[str, str]:
    """Tags stored on every model version: who, when, and the library versions it was made with."""
    tags = {
        "ray_deploy.deployment": name,
        "ray_deploy.model_kind": kind,
        "ray_deploy.deployed_by": _user(),
        "ray_deploy.deployed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ray_deploy.python": platform.python_version(),
    }
    for lib in ("ray-deploy", "ray", "mlflow", "scikit-learn", "torch", "numpy", "pandas"):
        try:
            tags[f"ray_deploy.version.{lib}"] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return tags


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _requirements(kind: ModelKind) -> list[str]:
    libs = ["mlflow", "cloudpickle", "numpy", "pandas"]
    libs += {"sklearn": ["scikit-learn"], "torch": ["torch"]}.get(kind, [])
    reqs = []
    for lib in libs:
        try:
            reqs.append(f"{lib}=={metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            reqs.append(lib)
    return reqs


def log_model(model: Any, kind: ModelKind, sample_input: Any = None, predict_method: PredictMethod = "predict") -> str:
    """Log ``model`` to the active MLflow run and return its model URI.

    Example:
        >>> with mlflow.start_run():
        ...     uri = log_model(fitted_pipeline, "sklearn", sample_input=X[:5])
    """
    import mlflow

    model = with_predict_method(model, kind, predict_method)
    signature = infer_signature(model, kind, sample_input, predict_method)
    example = _example(sample_input)
    common: dict[str, Any] = {
        "name": _ARTIFACT,
        "signature": signature,
        "input_example": example,
        "pip_requirements": _requirements(kind),
    }
    if kind == "sklearn":
        info = mlflow.sklearn.log_model(
            model, serialization_format="cloudpickle", pyfunc_predict_fn=predict_method, **common
        )
    elif kind == "torch":
        # pickle (cloudpickle) keeps dynamic batch sizes and classes defined in a notebook cell
        info = mlflow.pytorch.log_model(model, serialization_format="pickle", **common)
    elif kind == "pyfunc":
        info = mlflow.pyfunc.log_model(python_model=model, **common)
    elif kind == "callable":
        info = mlflow.pyfunc.log_model(python_model=CallableModel.wrap(model), **common)
    else:
        raise ConfigError(f"log_model does not take {kind!r} models; register the URI instead")
    return str(info.model_uri)


def _example(sample_input: Any) -> Any:
    if sample_input is None:
        return None
    sample = as_numpy(sample_input)
    return sample[:5] if hasattr(sample, "__len__") and not isinstance(sample, dict) else sample

"""Wrapping models of every accepted kind into MLflow models, and loading them back for serving.

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
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Literal

import numpy as np

from ray_deploy.errors import ConfigError

ModelKind = Literal["sklearn", "torch", "pyfunc", "callable", "uri"]
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


def infer_signature(model: Any, kind: ModelKind, sample_input: Any) -> Any:
    """Infer an MLflow signature from ``sample_input`` (or, without one, from the model itself).

    Returns None when nothing can be inferred; such a model is served without input validation.
    """
    from mlflow.models import infer_signature as mlflow_infer
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    if sample_input is not None:
        sample = as_numpy(sample_input)
        output = as_numpy(_run(model, kind, sample_input))
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


def _run(model: Any, kind: ModelKind, sample: Any) -> Any:
    if kind == "sklearn":
        return model.predict(sample)
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


def log_model(model: Any, kind: ModelKind, sample_input: Any = None) -> str:
    """Log ``model`` to the active MLflow run and return its model URI.

    Example:
        >>> with mlflow.start_run():
        ...     uri = log_model(fitted_pipeline, "sklearn", sample_input=X[:5])
    """
    import mlflow

    signature = infer_signature(model, kind, sample_input)
    example = _example(sample_input)
    common: dict[str, Any] = {
        "name": _ARTIFACT,
        "signature": signature,
        "input_example": example,
        "pip_requirements": _requirements(kind),
    }
    if kind == "sklearn":
        info = mlflow.sklearn.log_model(model, serialization_format="cloudpickle", **common)
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


@dataclass
class ServedModel:
    """A model loaded in a replica: ``predict`` takes a batch and returns one output row per input row."""

    uri: str
    flavor: Literal["torch", "pyfunc"]
    impl: Any
    signature: Any = None
    device: str = "cpu"

    def predict(self, data: Any) -> Any:
        """Run the model; torch models run under ``torch.inference_mode()`` on the replica's device."""
        if self.flavor == "torch":
            import torch

            array = np.asarray(data.to_numpy() if hasattr(data, "to_numpy") else data)
            if array.dtype == np.float64:
                array = array.astype(np.float32)
            with torch.inference_mode():
                out = self.impl(torch.as_tensor(array, device=self.device))
            return out.detach().cpu().numpy()
        return self.impl.predict(data)


def load_for_serving(uri: str) -> ServedModel:
    """Load a registered model; torch models go to the GPU when this process was given one.

    Example:
        >>> load_for_serving("models:/iris/1").predict(X[:2])
    """
    import mlflow

    info = mlflow.models.get_model_info(uri)
    if "pytorch" in info.flavors:
        import torch

        device = "cuda" if _has_gpu() and torch.cuda.is_available() else "cpu"
        module = mlflow.pytorch.load_model(uri, map_location=device)
        module.eval()
        return ServedModel(uri, "torch", module, info.signature, device)
    return ServedModel(uri, "pyfunc", mlflow.pyfunc.load_model(uri), info.signature)


def _has_gpu() -> bool:
    try:
        import ray

        return bool(ray.is_initialized() and ray.get_gpu_ids())
    except Exception:  # outside a Ray worker there is no GPU assignment to ask about
        return False

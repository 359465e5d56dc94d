"""Trainers for a retrain: how one hyperparameter config turns train/valid frames into a model and its metrics.

A trainer is ``trainer(config, train_df, valid_df) -> (model, metrics)``, or a generator function yielding
``(model, metrics)`` once per iteration (epoch, boosting rung); :mod:`ray_deploy.tuning` reports each yield to
Ray Tune, so ASHA can stop weak trials, and the last yield is the trial's result. The frames hold the features
and the target column :data:`LABEL`. This module runs no Ray: trainers work in any process.

:func:`builtin_trainer` builds one from a scikit-learn estimator (or Pipeline) or a torch ``nn.Module``, and
:func:`default_search_space` gives Tune distributions for it::

    trainer = builtin_trainer(LogisticRegression(max_iter=500), task="classification")
    for model, metrics in trainer({"C": 0.5}, train_df, valid_df):
        print(metrics["accuracy"])

A yielded model may be trained further by the next iteration (warm-started scikit-learn ensembles grow in
place): pickle or copy it before you resume the generator if you keep it.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import pandas as pd

from ray_deploy.errors import ConfigError

LABEL = "label"
"""The target column of the train and valid frames."""
Task = Literal["classification", "regression"]
InputKind = Literal["frame", "array"]
Metrics = dict[str, float]
Trainer = Callable[[dict[str, Any], pd.DataFrame, pd.DataFrame], Any]
"""``trainer(config, train_df, valid_df)`` returning ``(model, metrics)`` or yielding it once per iteration."""

RUNGS = 4
"""How many times a warm-startable ensemble grows (and yields) on its way to its full size."""
MAX_CLASSES = 20
"""Integer labels with at most this many distinct values are classes; more make a regression target."""
TORCH_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "batch_size": 64, "epochs": 10, "seed": 0}
_CUSTOM_HINT = "pass trainer=my_trainer(config, train_df, valid_df) -> (model, metrics)"


def task_of_labels(labels: Any) -> Task:
    """What a target column asks for: classes (strings, bools, integers with few values) or numbers (floats).

    Args:
        labels: A Series, array or list of labels.

    Returns:
        ``"classification"`` or ``"regression"``.

    Example:
        >>> task_of_labels([0, 1, 1]), task_of_labels(["a", "b"]), task_of_labels([0.5, 1.25])
        ('classification', 'classification', 'regression')
    """
    series = labels if isinstance(labels, pd.Series) else pd.Series(np.asarray(labels))
    kind = series.dtype.kind
    if kind == "f":
        return "regression"
    if kind in "iu":
        return "classification" if series.nunique() <= MAX_CLASSES else "regression"
    if kind == "O":
        present = series.dropna()
        if len(present) and all(isinstance(v, float) for v in present):
            return "regression"
        if len(present) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present):
            return "classification" if present.nunique() <= MAX_CLASSES else "regression"
    return "classification"


def default_metric(task: Task) -> tuple[str, str]:
    """The metric a retrain optimises by default, and its Tune mode.

    Example:
        >>> default_metric("classification"), default_metric("regression")
        (('accuracy', 'max'), ('rmse', 'min'))
    """
    return ("accuracy", "max") if task == "classification" else ("rmse", "min")


def features(frame: pd.DataFrame, input_kind: InputKind = "frame") -> Any:
    """The model's input: the frame without :data:`LABEL`, as a DataFrame or a float32 ndarray.

    Example:
        >>> features(pd.DataFrame({"x": [1, 2], "label": [0, 1]}), "array")
        array([[1.],
               [2.]], dtype=float32)
    """
    inputs = frame.drop(columns=[LABEL], errors="ignore")
    if input_kind == "array":
        return inputs.to_numpy(dtype=np.float32)
    if input_kind != "frame":
        raise ConfigError(f"input_kind must be 'frame' or 'array', not {input_kind!r}")
    return inputs


def _is_torch(model: Any) -> bool:
    """Whether ``model`` is a torch module (without importing torch: a module cannot exist before it is)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _is_sklearn(model: Any) -> bool:
    return callable(getattr(model, "fit", None)) and callable(getattr(model, "get_params", None))


def _torch_outputs(model: Any, inputs: Any, predict_method: str) -> np.ndarray:
    """A torch module's outputs on ``inputs``: eval mode, no grad, float32, softmax for ``predict_proba``."""
    import torch

    values = inputs.to_numpy(dtype=np.float32) if isinstance(inputs, pd.DataFrame) else inputs
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.tensor(np.asarray(values, dtype=np.float32), device=device))
            if predict_method == "predict_proba":
                out = torch.softmax(out, dim=-1)
            return np.asarray(out.detach().cpu().numpy())
    finally:
        model.train(was_training)


def _as_label_numbers(task: Task, out: np.ndarray) -> np.ndarray:
    """Class labels (argmax of 2-D outputs) or a 1-D regression vector."""
    if out.ndim == 2 and out.shape[1] == 1:
        return out[:, 0]
    if out.ndim == 2 and task == "classification":
        return np.argmax(out, axis=1)
    return out


def score(
    model: Any,
    frame: pd.DataFrame,
    *,
    task: Task,
    predict_method: str = "predict",
    input_kind: InputKind = "frame",
) -> Metrics:
    """Quality metrics of ``model`` on a labelled frame (via :func:`ray_deploy.performance.model_metrics`).

    ``predict_method="predict_proba"`` models output class probabilities: classification metrics use their argmax
    (mapped through ``classes_`` when the model has them) and auc uses the probabilities. Torch modules run in eval
    mode without gradients on a float32 tensor (softmax for ``predict_proba``, argmax for class labels). Metrics that
    cannot be computed (auc with one class) are left out.

    Example:
        >>> score(model, valid_df, task="classification", predict_method="predict_proba")["accuracy"]
        0.95
    """
    from ray_deploy.performance import model_metrics

    inputs = features(frame, input_kind)
    truth = frame[LABEL].to_numpy()
    scores: Any = None
    if _is_torch(model):
        out = _torch_outputs(model, inputs, predict_method)
        if predict_method == "predict_proba" and task == "classification":
            scores, pred = out, np.argmax(out, axis=1)
        else:
            pred = _as_label_numbers(task, out)
    else:
        method = getattr(model, predict_method, None)
        if not callable(method):
            raise ConfigError(f"{type(model).__name__} has no method {predict_method!r}; pass predict_method=")
        out = np.asarray(method(inputs))
        classes = getattr(model, "classes_", None)
        if predict_method == "predict_proba" and task == "classification" and out.ndim == 2:
            scores, pred = out, np.argmax(out, axis=1)
            if classes is not None:  # labels as indexes into classes_ (a label the model never saw: -1)
                index = {label: i for i, label in enumerate(np.asarray(classes).tolist())}
                truth = np.array([index.get(label, -1) for label in truth.tolist()], dtype=np.int64)
        else:
            pred = _as_label_numbers(task, out)
    metrics = model_metrics(task, truth, pred, scores=scores)
    return {name: float(value) for name, value in metrics.items() if value is not None}


# ---------------------------------------------------------------------------------------------------------------
# scikit-learn


def _final_estimator(model: Any) -> tuple[Any, str]:
    """The estimator that does the learning (a Pipeline's last step, recursively) and its set_params prefix."""
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps:
        name, last = steps[-1]
        inner, prefix = _final_estimator(last)
        return inner, f"{name}__{prefix}"
    return model, ""


def _growth_param(estimator: Any) -> str | None:
    """The parameter a warm-started ensemble grows by, or None.

    ``n_estimators`` for forests, bagging and gradient boosting; ``max_iter`` for histogram gradient boosting
    only (a linear model's or an MLP's ``max_iter`` bounds its solver, it does not add to the model).
    """
    params = estimator.get_params(deep=False)
    if "warm_start" not in params:
        return None
    if isinstance(params.get("n_estimators"), int):
        return "n_estimators"
    if type(estimator).__name__.startswith("HistGradientBoosting") and isinstance(params.get("max_iter"), int):
        return "max_iter"
    return None


def _configured(model: Any, config: dict[str, Any]) -> Any:
    """A fresh clone of ``model`` with ``config`` set; ConfigError naming the valid keys for an unknown one."""
    from sklearn.base import clone

    estimator = clone(model)
    valid = estimator.get_params(deep=True)
    unknown = sorted(k for k in config if k not in valid)
    if unknown:
        raise ConfigError(
            f"{type(model).__name__} has no parameter(s) {unknown}; the search space's keys must be set_params "
            f"keys, one of {sorted(valid)}"
        )
    try:
        estimator.set_params(**config)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"could not set {config} on {type(model).__name__}: {exc}") from exc
    return estimator


def _sklearn_plan(model: Any, config: dict[str, Any]) -> list[int] | None:
    """Sizes a warm-startable estimator grows through (one yield each), or None when it is fitted once."""
    estimator, _ = _final_estimator(_configured(model, config))
    name = _growth_param(estimator)
    if name is None:
        return None
    total = int(estimator.get_params(deep=False)[name])
    rungs = max(1, min(RUNGS, total))
    return sorted({max(1, math.ceil(total * (i + 1) / rungs)) for i in range(rungs)})


def _sklearn_trainer(model: Any, task: Task, predict_method: str, input_kind: InputKind) -> Trainer:
    def train(config: dict[str, Any], train_df: pd.DataFrame, valid_df: pd.DataFrame) -> Iterator[tuple[Any, Metrics]]:
        estimator = _configured(model, config)
        x, y = features(train_df, input_kind), train_df[LABEL]
        plan = _sklearn_plan(model, config)
        if plan is None:
            estimator.fit(x, y)
            yield estimator, score(estimator, valid_df, task=task, predict_method=predict_method, input_kind=input_kind)
            return
        final, _ = _final_estimator(estimator)
        name = _growth_param(final) or "n_estimators"  # not None: the plan exists only for a growth parameter
        for size in plan:
            final.set_params(warm_start=True, **{name: size})
            estimator.fit(x, y)
            yield estimator, score(estimator, valid_df, task=task, predict_method=predict_method, input_kind=input_kind)

    def planned(config: dict[str, Any]) -> int:
        plan = _sklearn_plan(model, config)
        return 1 if plan is None else len(plan)

    train.planned_iterations = planned  # type: ignore[attr-defined]
    return train


# ---------------------------------------------------------------------------------------------------------------
# torch


def _trial_has_gpu() -> bool:
    """Whether this process may use a GPU: inside Ray, the trial was given one; outside Ray, whether one shows."""
    try:
        import ray

        if ray.is_initialized():
            return bool(ray.get_gpu_ids())
    except Exception:  # not in Ray, or an older Ray without a runtime context: the process owns what it sees
        return True
    return True


def _class_indexes(labels: pd.Series) -> np.ndarray:
    values = labels.to_numpy()
    if values.dtype.kind == "b":
        return values.astype(np.int64)
    try:
        numbers = values.astype(np.float64)
    except (TypeError, ValueError):
        numbers = np.array([np.nan])
    if not np.all(np.isfinite(numbers)) or np.any(numbers != np.round(numbers)) or np.any(numbers < 0):
        raise ConfigError(
            "a torch classifier trains on labels that are class indexes 0..k-1; encode the label column first "
            f"(got values like {values[:3].tolist()})"
        )
    return numbers.astype(np.int64)


def _torch_trainer(module: Any, task: Task, predict_method: str, input_kind: InputKind) -> Trainer:
    def train(config: dict[str, Any], train_df: pd.DataFrame, valid_df: pd.DataFrame) -> Iterator[tuple[Any, Metrics]]:
        import torch

        unknown = sorted(set(config) - set(TORCH_DEFAULTS))
        if unknown:
            raise ConfigError(f"a torch module's config keys are {sorted(TORCH_DEFAULTS)}; unknown: {unknown}")
        settings = {**TORCH_DEFAULTS, **config}
        lr, batch_size, epochs = float(settings["lr"]), int(settings["batch_size"]), int(settings["epochs"])
        torch.manual_seed(int(settings["seed"]))
        net = copy.deepcopy(module)
        for layer in net.modules():
            reset = getattr(layer, "reset_parameters", None)
            if callable(reset):
                reset()
        device = torch.device("cuda" if torch.cuda.is_available() and _trial_has_gpu() else "cpu")
        net.to(device)
        x = torch.tensor(features(train_df, "array"), device=device)
        if task == "classification":
            y = torch.as_tensor(_class_indexes(train_df[LABEL]), device=device)
            loss_fn: Any = torch.nn.CrossEntropyLoss()
        else:
            y = torch.as_tensor(train_df[LABEL].to_numpy(dtype=np.float32), device=device)
            loss_fn = torch.nn.MSELoss()
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        shuffle = torch.Generator().manual_seed(int(settings["seed"]))
        for _ in range(epochs):
            net.train()
            for batch in torch.randperm(len(x), generator=shuffle).split(batch_size):
                batch = batch.to(device)
                out = net(x[batch])
                if task == "regression" and out.ndim == 2 and out.shape[1] == 1:
                    out = out[:, 0]
                loss = loss_fn(out, y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            snapshot = copy.deepcopy(net).to("cpu").eval()
            yield snapshot, score(snapshot, valid_df, task=task, predict_method=predict_method, input_kind=input_kind)

    def planned(config: dict[str, Any]) -> int:
        return int(config.get("epochs", TORCH_DEFAULTS["epochs"]))

    train.planned_iterations = planned  # type: ignore[attr-defined]
    return train


def builtin_trainer(
    model: Any, *, task: Task, predict_method: str = "predict", input_kind: InputKind = "frame"
) -> Trainer:
    """A generator trainer for a scikit-learn estimator/Pipeline or a torch ``nn.Module``.

    scikit-learn: ``clone(model).set_params(**config)``, fitted on the train frame; warm-startable ensembles
    (``n_estimators``/``max_iter`` with ``warm_start``) grow in up to :data:`RUNGS` steps and yield after each,
    others yield once. torch: a re-initialised deep copy trained with Adam (``lr``, ``batch_size``, ``epochs``,
    ``seed`` from the config), CrossEntropyLoss on class indexes or MSELoss, on CUDA when the trial has a GPU;
    yields a CPU copy after each epoch. Metrics come from :func:`score` on the valid frame. The trainer's
    ``planned_iterations(config)`` tells how many times it will yield.

    Args:
        model: The estimator or module (its fitted state, if any, is not used).
        task: ``"classification"`` or ``"regression"``.
        predict_method: ``"predict"``, or ``"predict_proba"`` for models that output class probabilities.
        input_kind: ``"frame"`` (a DataFrame without the label) or ``"array"`` (a float32 ndarray).

    Raises:
        ConfigError: For any other kind of model.

    Example:
        >>> trainer = builtin_trainer(Ridge(), task="regression")
        >>> model, metrics = list(trainer({"alpha": 0.1}, train_df, valid_df))[-1]
        >>> sorted(metrics)
        ['mae', 'r2', 'rmse']
    """
    if task not in ("classification", "regression"):
        raise ConfigError(f"task must be 'classification' or 'regression', not {task!r}")
    if _is_torch(model):
        return _torch_trainer(model, task, predict_method, input_kind)
    if _is_sklearn(model):
        return _sklearn_trainer(model, task, predict_method, input_kind)
    raise ConfigError(f"no built-in trainer for a {type(model).__qualname__}; {_CUSTOM_HINT}")


# ---------------------------------------------------------------------------------------------------------------
# search spaces


def _sklearn_spaces() -> dict[str, dict[str, Any]]:
    """Default Tune distributions by estimator class name."""
    from ray import tune

    forest = {
        "n_estimators": tune.choice([50, 100, 200]),
        "max_depth": tune.choice([None, 4, 8, 16]),
        "min_samples_leaf": tune.randint(1, 10),
        "max_features": tune.choice(["sqrt", 0.5, 1.0]),
    }
    boosting = {
        "n_estimators": tune.choice([50, 100, 200]),
        "learning_rate": tune.loguniform(0.01, 0.3),
        "max_depth": tune.randint(2, 6),
        "subsample": tune.uniform(0.6, 1.0),
    }
    hist = {
        "max_iter": tune.choice([50, 100, 200]),
        "learning_rate": tune.loguniform(0.01, 0.3),
        "max_leaf_nodes": tune.choice([15, 31, 63]),
        "l2_regularization": tune.loguniform(1e-6, 1.0),
    }
    neighbors = {"n_neighbors": tune.randint(1, 31), "weights": tune.choice(["uniform", "distance"])}
    mlp = {
        "hidden_layer_sizes": tune.choice([(32,), (64,), (64, 32)]),
        "alpha": tune.loguniform(1e-5, 1e-1),
        "learning_rate_init": tune.loguniform(1e-4, 1e-2),
    }
    tree = {"max_depth": tune.choice([None, 3, 5, 8, 12]), "min_samples_leaf": tune.randint(1, 20)}
    svm = {"C": tune.loguniform(1e-2, 1e2), "gamma": tune.choice(["scale", "auto"])}
    return {
        "LogisticRegression": {"C": tune.loguniform(1e-3, 1e2)},
        "RandomForestClassifier": forest,
        "RandomForestRegressor": forest,
        "ExtraTreesClassifier": forest,
        "ExtraTreesRegressor": forest,
        "GradientBoostingClassifier": boosting,
        "GradientBoostingRegressor": boosting,
        "HistGradientBoostingClassifier": hist,
        "HistGradientBoostingRegressor": hist,
        "Ridge": {"alpha": tune.loguniform(1e-4, 1e2)},
        "RidgeClassifier": {"alpha": tune.loguniform(1e-4, 1e2)},
        "Lasso": {"alpha": tune.loguniform(1e-4, 1e1)},
        "ElasticNet": {"alpha": tune.loguniform(1e-4, 1e1), "l1_ratio": tune.uniform(0.0, 1.0)},
        "SVC": svm,
        "SVR": svm,
        "KNeighborsClassifier": neighbors,
        "KNeighborsRegressor": neighbors,
        "MLPClassifier": mlp,
        "MLPRegressor": mlp,
        "DecisionTreeClassifier": tree,
        "DecisionTreeRegressor": tree,
    }


def default_search_space(model: Any) -> dict[str, Any]:
    """Ray Tune distributions for ``model``'s main hyperparameters; ``{}`` for an estimator it does not know.

    Keys are ``set_params`` keys (a Pipeline's final step as ``"<step>__<param>"``); a torch module gets
    ``lr``, ``batch_size`` and a fixed ``epochs`` (ASHA trims weak trials).

    Example:
        >>> sorted(default_search_space(make_pipeline(StandardScaler(), Ridge())))
        ['ridge__alpha']
    """
    from ray import tune

    if _is_torch(model):
        return {"lr": tune.loguniform(1e-4, 1e-1), "batch_size": tune.choice([32, 64, 128]), "epochs": 20}
    if not _is_sklearn(model):
        return {}
    estimator, prefix = _final_estimator(model)
    space = _sklearn_spaces().get(type(estimator).__name__, {})
    return {f"{prefix}{name}": dist for name, dist in space.items()}

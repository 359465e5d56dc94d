"""SHAP explanations of a model's predictions, in the input features the user sent.

This module computes explanations and nothing else: it picks a shap explainer for the model (tree, linear, deep,
permutation/exact, ...), runs it, and returns an :class:`Explanation` whose values add up to the predictions it
explains (``base_values + values.sum(features) == predictions``) for every explainer that guarantees additivity.
The result class itself (reading, serializing and plotting it) lives in :mod:`ray_deploy.explanation`.
It is imported by replica code, so at module level it needs only numpy, pandas and ``ray_deploy.errors`` /
``ray_deploy.explanation``; shap, scikit-learn, torch and Ray are imported inside the functions that use them.

Example:
    >>> from sklearn.linear_model import LinearRegression
    >>> import numpy as np
    >>> X = np.arange(20.0).reshape(10, 2)
    >>> expl = explain_model(LinearRegression().fit(X, X[:, 0]), "sklearn", X)
    >>> expl.explainer, expl.values.shape
    ('linear', (10, 2))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ray_deploy.errors import ConfigError
from ray_deploy.explanation import Explanation, concat

KINDS = ("sklearn", "torch", "pyfunc", "callable")
EXPLAINERS = ("auto", "tree", "linear", "gradient", "deep", "permutation", "exact", "kernel")
PREDICT_METHODS = ("predict", "predict_proba", "decision_function")

_TREE_NAMES = (
    "RandomForest",
    "ExtraTrees",
    "DecisionTree",
    "ExtraTree",
    "GradientBoosting",
    "HistGradientBoosting",
    "IsolationForest",
    "XGB",
    "LGBM",
    "Booster",
    "CatBoost",
)
_LINEAR_NAMES = (
    "LinearRegression",
    "LogisticRegression",
    "Ridge",
    "RidgeClassifier",
    "Lasso",
    "ElasticNet",
    "SGDRegressor",
    "SGDClassifier",
    "LinearSVR",
    "LinearSVC",
    "BayesianRidge",
    "HuberRegressor",
    "Lars",
    "LassoLars",
    "LogisticRegressionCV",
    "RidgeCV",
    "LassoCV",
    "ElasticNetCV",
)
_EXACT_MAX_FEATURES = 8  # 2**8 = 256 coalitions: cheaper than the permutation explainer's default 500 evaluations
_PERMUTATION_MAX_EVALS = 500


# ---- inputs -----------------------------------------------------------------------------------------------------


def _as_frame(data: Any, columns: list[str] | None = None) -> pd.DataFrame:
    """Rows as a DataFrame: DataFrame as is, else ndarray / tensor / list of rows with x0..xN (or ``columns``)."""
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "detach") and hasattr(data, "cpu"):  # a torch tensor
        data = data.detach().cpu().numpy()
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return pd.DataFrame(data)
    array = np.asarray(data)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ConfigError(f"explain takes a table of rows (2-D); got an array of shape {array.shape}")
    names = columns if columns is not None and len(columns) == array.shape[1] else None
    return pd.DataFrame(array, columns=names or [f"x{i}" for i in range(array.shape[1])])


# ---- the explained function -------------------------------------------------------------------------------------


def _is_pipeline(model: Any) -> bool:
    return type(model).__name__ == "Pipeline" and hasattr(model, "steps")


def _matches(model: Any, names: tuple[str, ...]) -> bool:
    name = type(model).__name__
    return any(name.startswith(n) or name == n for n in names)


def _output_names(model: Any, width: int, predict_method: str) -> list[str]:
    if width == 1:
        return ["prediction"] if predict_method == "predict" else [predict_method]
    classes = getattr(model, "classes_", None)
    if predict_method == "predict_proba" and classes is not None and len(classes) == width:
        return [f"class {c}" for c in classes]
    return [f"output {i}" for i in range(width)]


def _predict_fn(model: Any, kind: str, predict_method: str, template: pd.DataFrame) -> Callable[[Any], np.ndarray]:
    """The explained function: rows (array or frame) in, a 1-D or 2-D float array out."""
    if kind == "torch":
        import torch

        def torch_fn(x: Any) -> np.ndarray:
            values = np.array(x.to_numpy() if isinstance(x, pd.DataFrame) else x, dtype=np.float32)
            with torch.no_grad():
                out = model(torch.as_tensor(values))
                if predict_method == "predict_proba":
                    out = torch.softmax(out, dim=1)
            result = out.cpu().numpy().astype(float)
            return result[:, 0] if result.ndim == 2 and result.shape[1] == 1 else result

        return torch_fn

    if kind == "sklearn":
        if not hasattr(model, predict_method):
            raise ConfigError(f"{type(model).__name__} has no {predict_method}(); use one of {_methods(model)}")
        method = getattr(model, predict_method)
    elif kind in ("pyfunc", "callable"):
        method = getattr(model, predict_method, None) if predict_method != "predict" or kind == "pyfunc" else None
        if method is None:
            method = getattr(model, "predict", None) if kind == "pyfunc" else model
        if not callable(method):
            raise ConfigError(f"a {kind} model must be callable or have .{predict_method}(); got {type(model)}")
    else:
        raise ConfigError(f"unknown model kind {kind!r}; kinds: {list(KINDS)}")

    def fn(x: Any) -> np.ndarray:
        frame = x if isinstance(x, pd.DataFrame) else pd.DataFrame(np.asarray(x), columns=template.columns)
        # a model fitted on an array gets an array (no feature-name warnings); anything else gets the frame
        rows = frame.to_numpy() if kind == "sklearn" and not hasattr(model, "feature_names_in_") else frame
        result = np.asarray(method(rows), dtype=float)
        if isinstance(result, pd.DataFrame | pd.Series):
            result = result.to_numpy(dtype=float)
        return result[:, 0] if result.ndim == 2 and result.shape[1] == 1 else result

    return fn


def _methods(model: Any) -> list[str]:
    return [m for m in PREDICT_METHODS if hasattr(model, m)]


def _fits(model: Any, kind: str, predict_method: str) -> list[str]:
    """The explainers that fit this model, best first (before the model-agnostic ones)."""
    fits: list[str] = []
    if kind == "torch":
        fits += ["deep", "gradient"]
    elif kind == "sklearn" and not _is_pipeline(model):
        if _matches(model, _TREE_NAMES):
            fits.append("tree")
        elif _matches(model, _LINEAR_NAMES) and predict_method != "predict_proba":
            fits.append("linear")
    return [*fits, "exact", "permutation", "kernel"]


def _choose(model: Any, kind: str, explainer: str, predict_method: str, n_features: int) -> str:
    if explainer not in EXPLAINERS:
        raise ConfigError(f"unknown explainer {explainer!r}; explainers: {list(EXPLAINERS)}")
    fits = _fits(model, kind, predict_method)
    if explainer == "auto":
        if fits[0] not in ("exact", "permutation", "kernel"):
            return fits[0]
        return "exact" if n_features <= _EXACT_MAX_FEATURES else "permutation"
    if explainer not in fits:
        why = ""
        if explainer == "linear" and predict_method == "predict_proba" and _matches(model, _LINEAR_NAMES):
            why = (
                " (the linear explainer explains log-odds, which do not add up to probabilities: use "
                "predict_method='decision_function' for log-odds)"
            )
        what = f"a {kind} {type(model).__name__}" + (" pipeline" if _is_pipeline(model) else "")
        raise ConfigError(f"explainer {explainer!r} does not fit {what}{why}; explainers that fit: {fits}")
    return explainer


# ---- background -------------------------------------------------------------------------------------------------


def summarize_background(background: Any, max_background: int = 50, columns: list[str] | None = None) -> pd.DataFrame:
    """At most ``max_background`` representative rows: k-means (shap.kmeans) for numeric data, else a sample.

    Example:
        >>> summarize_background(np.arange(200.0).reshape(100, 2), 10).shape
        (10, 2)
    """
    frame = _as_frame(background, columns)
    if len(frame) <= max_background:
        return frame.reset_index(drop=True)
    numeric = all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in frame.dtypes)
    if numeric and not frame.isna().to_numpy().any():
        import shap

        centers = shap.kmeans(frame.to_numpy(dtype=float), max_background).data
        return pd.DataFrame(centers, columns=frame.columns).astype(frame.dtypes.to_dict())
    return frame.sample(max_background, random_state=0).reset_index(drop=True)


# ---- explaining -------------------------------------------------------------------------------------------------


def explain_model(
    model: Any,
    kind: str,
    data: Any,
    *,
    explainer: str = "auto",
    background: Any = None,
    predict_method: str = "predict",
    max_background: int = 50,
) -> Explanation:
    """Explain ``model``'s predictions on ``data`` with SHAP, in the input features.

    ``kind`` is "sklearn" (estimator or Pipeline), "torch" (nn.Module), "pyfunc" (has ``.predict``) or "callable".
    ``predict_method="predict_proba"`` explains class probabilities (sklearn ``predict_proba``, torch softmax of
    the logits). ``explainer="auto"`` picks ``tree`` for a bare tree model, ``linear`` for a bare linear model's
    ``predict``/``decision_function``, ``deep`` for torch, and otherwise ``exact`` (up to 8 features) or
    ``permutation`` over the background; an explicit name overrides it, and one that does not fit the model
    raises :class:`ConfigError` listing those that do. The background is ``background`` (default: ``data``)
    summarized to ``max_background`` rows. Every explainer but ``gradient`` adds up:
    ``base_values + values.sum(axis=1) == predictions``.

    Example:
        >>> from sklearn.ensemble import RandomForestRegressor
        >>> X = np.random.default_rng(0).normal(size=(30, 3))
        >>> expl = explain_model(RandomForestRegressor(5).fit(X, X[:, 0]), "sklearn", X)
        >>> expl.explainer, expl.values.shape
        ('tree', (30, 3))
    """
    frame = _as_frame(data)
    bg = summarize_background(frame if background is None else background, max_background, list(frame.columns))
    return _explain_prepared(model, kind, frame, explainer, bg, predict_method)


def _explain_prepared(
    model: Any,
    kind: str,
    frame: pd.DataFrame,
    explainer: str,
    bg: pd.DataFrame,
    predict_method: str,
    row_offset: int = 0,
) -> Explanation:
    """Explain ``frame`` against an already summarized background; ``row_offset`` seeds random explainers per
    row, so a row gets the same values whichever chunk it is explained in."""
    if predict_method not in PREDICT_METHODS:
        raise ConfigError(f"unknown predict_method {predict_method!r}; methods: {list(PREDICT_METHODS)}")
    if list(bg.columns) != list(frame.columns):
        raise ConfigError(f"the background's columns {list(bg.columns)} differ from the data's {list(frame.columns)}")
    if kind == "torch" and predict_method == "decision_function":
        raise ConfigError("a torch model has predict (its outputs) or predict_proba (softmax of them)")
    name = _choose(model, kind, explainer, predict_method, frame.shape[1])
    fn = _predict_fn(model, kind, predict_method, frame)
    predictions = fn(frame)
    if name == "tree":
        values, base = _tree(model, frame, bg, predict_method, predictions)
    elif name == "linear":
        values, base = _linear(model, frame, bg, predict_method)
    elif name in ("deep", "gradient"):
        values, base = _torch(model, frame, bg, predict_method, name)
    else:
        values, base = _agnostic(fn, frame, bg, name, row_offset)
    values, base = _shape(values, base, predictions, name)
    width = 1 if predictions.ndim == 1 else predictions.shape[1]
    return Explanation(
        values=values,
        base_values=base,
        feature_names=[str(c) for c in frame.columns],
        data=frame,
        predictions=predictions,
        explainer=name,
        output_names=_output_names(model, width, predict_method),
    )


def _shape(values: Any, base: Any, predictions: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Bring shap's many return shapes to (n, f[, k]) and (n[, k]), matching ``predictions``."""
    if isinstance(values, list):  # older shap: one array per output
        values = np.stack([np.asarray(v) for v in values], axis=-1)
    values = np.asarray(values, dtype=float)
    flat = np.asarray(base, dtype=float).reshape(-1)
    n = values.shape[0]
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[:, :, 0]
    if values.ndim == 2:
        base = np.broadcast_to(flat if flat.size == n else flat[:1], (n,)).copy()
    else:
        k = values.shape[2]
        base = np.broadcast_to(flat.reshape(-1, k), (n, k)).copy()
    if predictions.ndim == 2 and values.ndim == 2 and predictions.shape[1] == 2:
        # a binary classifier explained for its positive class only: class 0 is its mirror image (p0 = 1 - p1)
        values = np.stack([-values, values], axis=-1)
        base = np.stack([1.0 - base, base], axis=-1)
    expected = predictions.shape[1:]
    if values.shape[2:] != expected:
        raise ConfigError(
            f"the {name} explainer gave values of shape {values.shape} for predictions {predictions.shape}"
        )
    return values, base


def _tree(
    model: Any, frame: pd.DataFrame, bg: pd.DataFrame, predict_method: str, predictions: np.ndarray
) -> tuple[Any, Any]:
    import shap

    x = frame.to_numpy(dtype=float)
    if predict_method == "predict_proba":
        explainer = shap.TreeExplainer(
            model, bg.to_numpy(dtype=float), model_output="probability", feature_perturbation="interventional"
        )
    elif predict_method == "decision_function" or not hasattr(model, "predict_proba"):
        explainer = shap.TreeExplainer(model)  # raw output: the regression value, or a boosted model's margin
    else:
        raise ConfigError(
            f"a {type(model).__name__}'s predict() gives class labels, which SHAP cannot add up; "
            "explain predict_method='predict_proba' (probabilities) or 'decision_function' instead"
        )
    out = explainer(x, check_additivity=False)
    return out.values, out.base_values


def _linear(model: Any, frame: pd.DataFrame, bg: pd.DataFrame, predict_method: str) -> tuple[Any, Any]:
    import shap

    if predict_method == "predict" and hasattr(model, "predict_proba"):
        raise ConfigError(
            f"a {type(model).__name__}'s predict() gives class labels, which SHAP cannot add up; "
            "explain predict_method='predict_proba' (probabilities) or 'decision_function' (log-odds) instead"
        )
    explainer = shap.LinearExplainer(model, shap.maskers.Independent(bg.to_numpy(dtype=float), max_samples=len(bg)))
    out = explainer(frame.to_numpy(dtype=float))
    return out.values, out.base_values


def _torch(model: Any, frame: pd.DataFrame, bg: pd.DataFrame, predict_method: str, name: str) -> tuple[Any, Any]:
    import shap
    import torch

    module = model.eval()
    if predict_method == "predict_proba":
        module = torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval()
    x = torch.as_tensor(np.array(frame.to_numpy(), dtype=np.float32))
    background = torch.as_tensor(np.array(bg.to_numpy(), dtype=np.float32))
    if name == "deep":
        try:
            deep = shap.DeepExplainer(module, background)
            values = deep.shap_values(x, check_additivity=False)
            return values, deep.expected_value
        except Exception as e:  # layers DeepExplainer has no rule for: fall back to expected gradients
            import logging

            logging.getLogger(__name__).warning("DeepExplainer failed (%s); using GradientExplainer", e)
    grad = shap.GradientExplainer(module, background)
    values = grad.shap_values(x)
    with torch.no_grad():
        out = module(background).cpu().numpy().astype(float)
    return values, out.mean(axis=0)


class _Codes:
    """Non-numeric columns as integer codes, so shap's maskers (which compare floats) can mix rows; ``decode``
    turns a masked float array back into a DataFrame with the input's columns, values and dtypes."""

    def __init__(self, *frames: pd.DataFrame) -> None:
        self.template = frames[0]
        whole = pd.concat(frames)
        self.categories = {
            col: pd.Index(pd.unique(whole[col]))
            for col in whole.columns
            if not pd.api.types.is_numeric_dtype(whole[col]) or pd.api.types.is_bool_dtype(whole[col])
        }

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = frame.copy()
        for col, cats in self.categories.items():
            out[col] = cats.get_indexer(frame[col])
        return out.to_numpy(dtype=float)

    def decode(self, x: Any) -> pd.DataFrame:
        array = np.asarray(x, dtype=float).reshape(-1, self.template.shape[1])
        frame = pd.DataFrame(array, columns=self.template.columns)
        for col, cats in self.categories.items():
            frame[col] = cats[frame[col].to_numpy().round().astype(int)]
        return frame.astype(self.template.dtypes.to_dict())


def _agnostic(
    fn: Callable[[Any], np.ndarray], frame: pd.DataFrame, bg: pd.DataFrame, name: str, row_offset: int
) -> tuple[np.ndarray, np.ndarray]:
    """Model-agnostic explainers over the background, on coded rows (see :class:`_Codes`)."""
    import shap

    codes = _Codes(frame, bg)

    def coded(x: Any) -> np.ndarray:
        return fn(codes.decode(x))

    x, background = codes.encode(frame), codes.encode(bg)
    if name == "kernel":
        kernel = shap.KernelExplainer(coded, background)
        values = kernel.shap_values(x, silent=True)
        return np.asarray(values), np.asarray(kernel.expected_value)
    moot = _nothing_varies(x, background)
    if moot.any():  # shap's explainers fail on them; their answer is known
        predictions = np.asarray(coded(x[moot]), dtype=float)
        if moot.all():
            return np.zeros((len(x), x.shape[1], *predictions.shape[1:])), predictions
        rest_values, rest_bases = _agnostic(fn, frame[~moot], bg, name, row_offset)
        every_value = np.zeros((len(x), *np.shape(rest_values)[1:]))
        every_base = np.empty((len(x), *np.shape(rest_bases)[1:]))
        every_value[~moot], every_base[~moot], every_base[moot] = rest_values, rest_bases, predictions
        return every_value, every_base
    masker = shap.maskers.Independent(background, max_samples=len(background))
    if name == "exact":
        out = shap.explainers.ExactExplainer(coded, masker)(x)
        return out.values, out.base_values
    # permutation: one seed per row (by its position in the whole data), so chunking does not change the values
    state = np.random.get_state()
    values, bases = [], []
    try:
        explainer = shap.PermutationExplainer(coded, masker)
        for i in range(len(x)):
            np.random.seed(row_offset + i)
            out = explainer(x[i : i + 1], max_evals=max(_PERMUTATION_MAX_EVALS, 2 * x.shape[1] + 1), silent=True)
            values.append(out.values)
            bases.append(np.asarray(out.base_values).reshape(1, *np.shape(out.values)[2:]))
    finally:
        np.random.set_state(state)
    return np.concatenate(values), np.concatenate(bases)


def _nothing_varies(x: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Which rows equal every background row in every feature: masking them changes nothing, so every feature's share
    is 0 and the base value is the row's own prediction (e.g. identical rows explained against themselves).

    Example:
        >>> _nothing_varies(np.array([[1.0, 2.0], [1.0, 3.0]]), np.array([[1.0, 2.0], [1.0, 2.0]]))
        array([ True, False])
    """
    first = background[0]
    constant = np.isclose(background, first, equal_nan=True).all(axis=0)  # features no background row varies in
    return np.asarray((constant & np.isclose(x, first, equal_nan=True)).all(axis=1))


def explain_parallel(
    model: Any, kind: str, data: Any, *, chunks: int, num_cpus: float = 0.5, **kwargs: Any
) -> Explanation:
    """Explain ``data`` in ``chunks`` contiguous chunks, each a Ray task, and join them in order.

    Every chunk uses the same background (summarized once here), so the result equals :func:`explain_model`'s
    on the same rows. Torch models get one GPU per task when the cluster has one. Needs a connected Ray
    (``ray_deploy.connect()``). ``kwargs`` are :func:`explain_model`'s.

    Example:
        >>> expl = explain_parallel(model, "sklearn", frame, chunks=4, predict_method="predict_proba")  # doctest: +SKIP
    """
    import ray

    if chunks < 1:
        raise ConfigError(f"chunks must be at least 1; got {chunks}")
    unknown = set(kwargs) - {"explainer", "background", "predict_method", "max_background"}
    if unknown:
        raise ConfigError(f"unknown arguments {sorted(unknown)}; explain_parallel takes explain_model's")
    frame = _as_frame(data)
    background = kwargs.get("background")
    bg = summarize_background(
        frame if background is None else background, kwargs.get("max_background", 50), list(frame.columns)
    )
    explainer = kwargs.get("explainer", "auto")
    predict_method = kwargs.get("predict_method", "predict")
    gpus = 1.0 if kind == "torch" and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    task = ray.remote(num_cpus=num_cpus, num_gpus=gpus)(_explain_prepared)
    model_ref, bg_ref = ray.put(model), ray.put(bg)
    bounds = np.linspace(0, len(frame), min(chunks, max(len(frame), 1)) + 1).astype(int)
    refs = [
        task.remote(model_ref, kind, frame.iloc[a:b], explainer, bg_ref, predict_method, int(a))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        if b > a
    ]
    return concat(list(ray.get(refs)))

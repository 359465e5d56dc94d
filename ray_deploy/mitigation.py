"""Fairness mitigation: a fairlearn-mitigated model, and a deployment's mitigated version with before/after reports.

:func:`mitigate_model` wraps a fitted model in ``fairlearn.postprocessing.ThresholdOptimizer`` or retrains it
under ``fairlearn.reductions.ExponentiatedGradient``, giving a picklable :class:`MitigatedModel`. :func:`mitigate`
does that for a deployment's serving version and registers the result as a new version with its lineage (parent
version, method, sensitive columns) and the ``challenger`` alias, not served: roll it out when ready (a canary,
once rollouts exist, or ``deploy``).

Example:
    >>> result = mitigate("credit", X_train, y_train, sensitive=["sex"])
    >>> result.after.demographic_parity_difference < result.before.demographic_parity_difference
    True
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ray_deploy.errors import ConfigError
from ray_deploy.fairness import group_names, label_array, require_columns, sort_key

if TYPE_CHECKING:
    from ray_deploy.fairness import FairnessReport

CHALLENGER = "challenger"
MITIGATION_METHODS = ("threshold", "exponentiated_gradient")
MITIGATION_CONSTRAINTS = (
    "demographic_parity",
    "equalized_odds",
    "true_positive_rate_parity",
    "false_positive_rate_parity",
)


class MitigatedModel:
    """A fitted fairlearn mitigator with ``predict(df)``; ``df`` holds the model's inputs plus the sensitive columns.

    Defined at module level so cloudpickle and MLflow can save it. Predictions use a fixed ``random_state``,
    so the same rows always get the same labels.

    Example:
        >>> mitigated = mitigate_model(model, X_with_sex, y, ["sex"])
        >>> mitigated.predict(X_with_sex[:3])
        array([1, 0, 0])
    """

    def __init__(
        self,
        mitigator: Any,
        features: list[str],
        sensitive: list[str],
        method: str,
        constraints: str,
        classes: list[Any],
        random_state: int = 0,
    ) -> None:
        self.mitigator = mitigator
        self.features = list(features)
        self.sensitive = list(sensitive)
        self.method = method
        self.constraints = constraints
        self.classes_ = np.asarray(classes)
        self.random_state = random_state

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Mitigated labels for the rows of ``df`` (the model's input columns and the sensitive columns).

        Example:
            >>> mitigated.predict(df).shape == (len(df),)
            True
        """
        if isinstance(df, Mapping | list):  # column dict or row records, as a JSON body gives them
            df = pd.DataFrame(df)
        if not isinstance(df, pd.DataFrame):
            raise ConfigError(
                f"a mitigated model predicts from a DataFrame with the columns {self.features + self.sensitive}; "
                f"got {type(df).__name__}"
            )
        require_columns(df, [*self.features, *self.sensitive], "predict input")
        X = df[self.features]
        groups = group_names(df[self.sensitive])
        if self.method == "threshold":
            raw = self.mitigator.predict(X, sensitive_features=groups, random_state=self.random_state)
        else:  # the reduction's classifiers were trained without the sensitive columns
            raw = self.mitigator.predict(X, random_state=self.random_state)
        return self.classes_[np.asarray(raw).astype(int)]

    def __repr__(self) -> str:
        return f"MitigatedModel(method={self.method!r}, constraints={self.constraints!r}, sensitive={self.sensitive})"


def mitigate_model(
    model: Any,
    data: pd.DataFrame,
    labels: Any,
    sensitive: list[str],
    *,
    method: str = "threshold",
    constraints: str = "demographic_parity",
) -> MitigatedModel:
    """Fit a fairlearn mitigator around ``model`` on ``data``/``labels``; returns a picklable :class:`MitigatedModel`.

    ``"threshold"`` post-processes the fitted model (``ThresholdOptimizer``, prefit, on ``predict_proba`` when it
    has one, else ``decision_function``); ``"exponentiated_gradient"`` retrains a clone of it under the
    constraint (``ExponentiatedGradient``). The sensitive columns are passed to the inner model only when it was
    trained on them (``feature_names_in_``/``n_features_in_``).

    Raises:
        ConfigError: unknown method or constraint, a sensitive column missing from ``data``, length mismatch.

    Example:
        >>> mitigated = mitigate_model(model, X_with_sex, y, ["sex"], constraints="equalized_odds")
        >>> fairness_metrics(y, mitigated.predict(X_with_sex), X_with_sex["sex"]).demographic_parity_difference
        0.04
    """
    if method not in MITIGATION_METHODS:
        raise ConfigError(f"unknown mitigation method {method!r}; choose one of {list(MITIGATION_METHODS)}")
    if constraints not in MITIGATION_CONSTRAINTS:
        raise ConfigError(f"unknown fairness constraint {constraints!r}; choose one of {list(MITIGATION_CONSTRAINTS)}")
    if not isinstance(data, pd.DataFrame):
        raise ConfigError(f"mitigate_model needs a DataFrame with the sensitive columns; got {type(data).__name__}")
    if isinstance(sensitive, str):
        sensitive = [sensitive]
    if not sensitive:
        raise ConfigError("mitigate_model needs at least one sensitive column")
    require_columns(data, list(sensitive), "data")
    y = label_array(labels, "labels")
    if len(y) != len(data):
        raise ConfigError(f"labels and data must have the same length; got {len(y)} and {len(data)}")
    classes = sorted(pd.unique(y).tolist(), key=sort_key)
    if len(classes) != 2:
        raise ConfigError(f"fairness mitigation needs binary labels; got {len(classes)}: {classes[:10]}")
    features = _model_features(model, data, list(sensitive))
    X, groups = data[features], group_names(data[list(sensitive)])
    # fairlearn works on 0/1 labels: the larger class is the positive one (as in predict_proba[:, 1]).
    y01 = (y == classes[1]).astype(int)

    if method == "threshold":
        from fairlearn.postprocessing import ThresholdOptimizer

        if hasattr(model, "predict_proba"):
            predict_method = "predict_proba"
        elif hasattr(model, "decision_function"):
            predict_method = "decision_function"
        else:
            raise ConfigError(
                f"threshold mitigation needs a model with predict_proba or decision_function; "
                f"{type(model).__name__} has neither (try method='exponentiated_gradient')"
            )
        mitigator: Any = ThresholdOptimizer(
            estimator=model, constraints=constraints, prefit=True, predict_method=predict_method
        )
        mitigator.fit(X, y01, sensitive_features=groups)
    else:
        from fairlearn.reductions import (
            DemographicParity,
            EqualizedOdds,
            ExponentiatedGradient,
            FalsePositiveRateParity,
            TruePositiveRateParity,
        )
        from sklearn.base import clone

        moments = {
            "demographic_parity": DemographicParity,
            "equalized_odds": EqualizedOdds,
            "true_positive_rate_parity": TruePositiveRateParity,
            "false_positive_rate_parity": FalsePositiveRateParity,
        }
        mitigator = ExponentiatedGradient(_weighted_estimator(clone(model)), constraints=moments[constraints]())
        mitigator.fit(X, y01, sensitive_features=groups)
    return MitigatedModel(mitigator, features, list(sensitive), method, constraints, classes)


def _weighted_estimator(estimator: Any) -> Any:
    """``estimator`` if its ``fit`` takes ``sample_weight`` (as the reductions need); a Pipeline routes it."""
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import has_fit_parameter

    if isinstance(estimator, Pipeline) and has_fit_parameter(estimator.steps[-1][1], "sample_weight"):
        return _WeightedPipeline(estimator)
    if not has_fit_parameter(estimator, "sample_weight"):
        raise ConfigError(
            f"exponentiated_gradient retrains the model with sample weights, and {type(estimator).__name__}.fit "
            "takes no sample_weight; use method='threshold'"
        )
    return estimator


class _WeightedPipeline:
    """A scikit-learn Pipeline whose ``fit(X, y, sample_weight)`` hands the weights to its final step."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"pipeline": self.pipeline}

    def set_params(self, **params: Any) -> _WeightedPipeline:
        self.pipeline = params.get("pipeline", self.pipeline)
        return self

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> _WeightedPipeline:
        step = self.pipeline.steps[-1][0]
        weights = {} if sample_weight is None else {f"{step}__sample_weight": sample_weight}
        self.pipeline.fit(X, y, **weights)
        return self

    def predict(self, X: Any) -> Any:
        return self.pipeline.predict(X)


def _model_features(model: Any, data: pd.DataFrame, sensitive: list[str]) -> list[str]:
    """The columns of ``data`` the inner model was trained on (sensitive ones only if it used them)."""
    others = [c for c in data.columns if c not in sensitive]
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        names = [str(n) for n in names]
        require_columns(data, names, "data")
        return names
    n_in = getattr(model, "n_features_in_", None)
    if n_in is None or n_in == len(others):
        return others
    if n_in == len(data.columns):
        return list(data.columns)
    raise ConfigError(
        f"the model takes {n_in} features but data has {len(others)} non-sensitive columns "
        f"({len(data.columns)} with {sensitive}); pass the model's training columns plus the sensitive ones"
    )


@dataclass(frozen=True)
class Mitigation:
    """A mitigated model version and the fairness of the champion before and of the new version after."""

    name: str
    version: str
    parent_version: str
    method: str
    before: FairnessReport
    after: FairnessReport

    def _repr_html_(self) -> str:
        table = self.before.compare(self.after).to_html()
        return (
            f"<div><b>ray-deploy: {html.escape(self.name)}</b> version {self.version} mitigates version "
            f"{self.parent_version} ({html.escape(self.method)}); alias '{CHALLENGER}', not serving yet.{table}</div>"
        )


def split_sensitive(data: Any, sensitive: list[str], inputs: list[str] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``data`` as (model inputs, sensitive columns); sensitive columns that are not inputs leave the inputs."""
    frame = pd.DataFrame(data)
    missing = [c for c in sensitive if c not in frame.columns]
    if missing:
        raise ConfigError(f"sensitive column(s) {missing} are not in the data; columns: {list(frame.columns)}")
    if inputs is None:
        return frame.drop(columns=sensitive), frame[sensitive]
    return frame[[c for c in inputs if c in frame.columns]], frame[sensitive]


def predicted_labels(predictions: Any) -> np.ndarray:
    """Class labels from predictions: labels as they are, class probabilities by their most likely class."""
    array = np.asarray(predictions)
    return array.argmax(axis=1) if array.ndim == 2 else array


def mitigate(
    name: str, data: Any, labels: Any, sensitive: list[str], method: str = "threshold", **options: Any
) -> Mitigation:
    """Build a mitigated model of the serving (champion) version with fairlearn and register it as a new version.

    ``method``: ``threshold`` (fairlearn's ThresholdOptimizer on the fitted model) or ``exponentiated_gradient``
    (a reductions method that refits a clone). The new model takes the model's inputs plus the sensitive columns.
    Only scikit-learn models can be mitigated.

    Example:
        >>> mitigate("credit", X_train, y_train, sensitive=["sex"]).version
        '4'
    """
    import mlflow
    from mlflow import MlflowClient

    from ray_deploy import registry
    from ray_deploy.config import Settings
    from ray_deploy.dataplane.served_model import load_verified
    from ray_deploy.deployment import get
    from ray_deploy.fairness import fairness_metrics, record_report

    deployment = get(name)
    parent = deployment.version
    if parent is None:
        raise ConfigError(f"deployment {name!r} has no serving version to mitigate")
    registry.use_mlflow(Settings.from_env())
    uri = registry.model_uri(name, parent)
    if "sklearn" not in mlflow.models.get_model_info(uri).flavors:
        raise ConfigError(f"version {parent} of {name!r} is not a scikit-learn model; only those can be mitigated")
    model = load_verified(uri, "sklearn")
    frame = pd.DataFrame(data)
    features, groups = split_sensitive(frame, sensitive, deployment._input_names())
    before = fairness_metrics(labels, predicted_labels(deployment.predict(features)), groups)
    mitigated = mitigate_model(model, frame, labels, sensitive, method=method, **options)
    after = fairness_metrics(labels, np.asarray(mitigated.predict(frame)), groups)
    version = registry.register(mitigated.predict, "callable", name, sample_input=frame.head(5))
    client = MlflowClient()
    lineage = {"parent_version": parent, "mitigation.method": method, "mitigation.sensitive": ",".join(sensitive)}
    for key, value in lineage.items():
        client.set_model_version_tag(name, version, f"ray_deploy.{key}", value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    record_report(name, version, after)
    return Mitigation(name, version, parent, method, before, after)

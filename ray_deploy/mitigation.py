"""Fairness mitigation of a deployment: a mitigated model registered as a new version, with before/after reports.

The mitigated version is registered with its lineage (parent version, method, sensitive columns) and the
``challenger`` alias, not served: roll it out when ready (a canary, once rollouts exist, or ``deploy``).

Example:
    >>> result = mitigate("credit", X_train, y_train, sensitive=["sex"])
    >>> result.after.demographic_parity_difference < result.before.demographic_parity_difference
    True
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ray_deploy.errors import ConfigError

if TYPE_CHECKING:
    from ray_deploy.fairness import FairnessReport

CHALLENGER = "challenger"


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
    from ray_deploy.deployment import get
    from ray_deploy.fairness import fairness_metrics, mitigate_model, record_report

    deployment = get(name)
    parent = deployment.version
    if parent is None:
        raise ConfigError(f"deployment {name!r} has no serving version to mitigate")
    registry.use_mlflow(Settings.from_env())
    uri = registry.model_uri(name, parent)
    if "sklearn" not in mlflow.models.get_model_info(uri).flavors:
        raise ConfigError(f"version {parent} of {name!r} is not a scikit-learn model; only those can be mitigated")
    model = mlflow.sklearn.load_model(uri)
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

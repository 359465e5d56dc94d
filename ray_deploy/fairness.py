"""Fairness of a binary classifier across groups: per-group metrics with intervals, a gate, MLflow records.

Metrics come from ``fairlearn.metrics`` (``MetricFrame`` and the parity functions), intervals are Wilson 95%
(statsmodels when installed, else scipy). Nothing here is hand-written fairness math: this module computes
a :class:`FairnessReport`, decides a :func:`fairness_gate` (pure), records a report in MLflow
(:func:`record_report`) and draws it offline (matplotlib PNG). Mitigation lives in :mod:`ray_deploy.mitigation`.

Example:
    >>> report = fairness_metrics(y_true, model.predict(X), X[["sex"]])
    >>> report.demographic_parity_difference, report.passes_four_fifths
    (0.3, False)
    >>> fairness_gate(report, mitigated_report).passed
    True
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ray_deploy.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

__all__ = [
    "GROUP_METRICS",
    "HEADLINE_METRICS",
    "FairnessReport",
    "GateResult",
    "GroupMetrics",
    "fairness_gate",
    "fairness_metrics",
    "record_report",
]

GROUP_METRICS = ("selection_rate", "accuracy", "tpr", "fpr")
HEADLINE_METRICS = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "disparate_impact",
)
# Metrics where a larger value is fairer (a ratio); for the rest (differences) a smaller value is fairer.
_HIGHER_IS_FAIRER = frozenset({"demographic_parity_ratio", "disparate_impact"})
FOUR_FIFTHS = 0.8
_REPORT_ARTIFACT = "fairness_report.json"
_NO_CI = (float("nan"), float("nan"))


@dataclass(frozen=True)
class GroupMetrics:
    """One group's rates with Wilson 95% intervals; ``tpr``/``fpr`` are None when it has no positives/negatives.

    Example:
        >>> GroupMetrics("A", 100, 0.6, (0.5, 0.69), 0.8, (0.71, 0.87), 0.9, (0.8, 0.95), 0.3, (0.2, 0.45)).count
        100
    """

    group: str
    count: int
    selection_rate: float
    selection_rate_ci: tuple[float, float]
    accuracy: float
    accuracy_ci: tuple[float, float]
    tpr: float | None
    tpr_ci: tuple[float, float] | None
    fpr: float | None
    fpr_ci: tuple[float, float] | None


@dataclass(frozen=True)
class GateResult:
    """The verdict of :func:`fairness_gate`: did ``metric`` worsen by more than ``max_increase``?

    Example:
        >>> GateResult(True, "demographic_parity_difference", 0.1, 0.12, 0.05, "worsened by 0.02 <= 0.05").passed
        True
    """

    passed: bool
    metric: str
    before: float
    after: float
    max_increase: float
    reason: str


@dataclass(frozen=True)
class FairnessReport:
    """Per-group metrics and the headline parity numbers of one model's predictions on one data set.

    Example:
        >>> report = fairness_metrics([1, 0, 1, 0], [1, 0, 0, 0], pd.Series(["A", "A", "B", "B"], name="g"))
        >>> report.summary()["demographic_parity_difference"]
        0.5
    """

    sensitive: list[str]
    positive_label: Any
    groups: list[GroupMetrics]
    demographic_parity_difference: float
    demographic_parity_ratio: float
    equalized_odds_difference: float
    disparate_impact: float
    passes_four_fifths: bool
    n: int

    def to_frame(self) -> pd.DataFrame:
        """One row per group (index ``group``): count, each metric and its interval bounds.

        Example:
            >>> report.to_frame().loc["A", "selection_rate"]
            0.6
        """
        rows = []
        for g in self.groups:
            row: dict[str, Any] = {"group": g.group, "count": g.count}
            for metric in GROUP_METRICS:
                value, ci = getattr(g, metric), getattr(g, f"{metric}_ci")
                low, high = ci if ci is not None else (None, None)
                row[metric] = np.nan if value is None else value
                row[f"{metric}_ci_low"] = np.nan if low is None else low
                row[f"{metric}_ci_high"] = np.nan if high is None else high
            rows.append(row)
        columns = ["group", "count"] + [f"{m}{s}" for m in GROUP_METRICS for s in ("", "_ci_low", "_ci_high")]
        return pd.DataFrame(rows, columns=columns).set_index("group")

    def summary(self) -> dict[str, float | bool]:
        """The headline metrics and the 80% rule verdict.

        Example:
            >>> report.summary()["passes_four_fifths"]
            False
        """
        out: dict[str, float | bool] = {m: float(getattr(self, m)) for m in HEADLINE_METRICS}
        out["passes_four_fifths"] = bool(self.passes_four_fifths)
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN becomes null, tuples lists) that :meth:`from_json` reads back.

        Example:
            >>> FairnessReport.from_json(report.to_json()) == report
            True
        """
        data = asdict(self)
        data["positive_label"] = _json_scalar(self.positive_label)
        return _json_safe(data)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FairnessReport:
        """Rebuild a report from :meth:`to_json` output (or its JSON text parsed).

        Example:
            >>> FairnessReport.from_json(report.to_json()).n
            200
        """
        try:
            groups = [
                GroupMetrics(
                    group=str(g["group"]),
                    count=int(g["count"]),
                    selection_rate=_float(g["selection_rate"]),
                    selection_rate_ci=_ci(g["selection_rate_ci"]) or _NO_CI,
                    accuracy=_float(g["accuracy"]),
                    accuracy_ci=_ci(g["accuracy_ci"]) or _NO_CI,
                    tpr=None if g["tpr"] is None else float(g["tpr"]),
                    tpr_ci=_ci(g["tpr_ci"]),
                    fpr=None if g["fpr"] is None else float(g["fpr"]),
                    fpr_ci=_ci(g["fpr_ci"]),
                )
                for g in data["groups"]
            ]
            return cls(
                sensitive=[str(s) for s in data["sensitive"]],
                positive_label=data["positive_label"],
                groups=groups,
                demographic_parity_difference=_float(data["demographic_parity_difference"]),
                demographic_parity_ratio=_float(data["demographic_parity_ratio"]),
                equalized_odds_difference=_float(data["equalized_odds_difference"]),
                disparate_impact=_float(data["disparate_impact"]),
                passes_four_fifths=bool(data["passes_four_fifths"]),
                n=int(data["n"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a fairness report document: {exc!r} (expected FairnessReport.to_json())") from None

    def table_html(self) -> str:
        """The per-group table as HTML (rates with their 95% intervals).

        Example:
            >>> "<table" in report.table_html()
            True
        """
        head = "".join(f"<th>{h}</th>" for h in ("group", "count", "selection rate", "accuracy", "TPR", "FPR"))
        body = []
        for g in self.groups:
            cells = [html.escape(g.group), str(g.count)]
            for metric in GROUP_METRICS:
                cells.append(_rate_cell(getattr(g, metric), getattr(g, f"{metric}_ci")))
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        caption = html.escape(", ".join(self.sensitive))
        return (
            f'<table class="ray-deploy-fairness"><caption>groups by {caption} '
            f"(positive label {html.escape(repr(self.positive_label))}, n={self.n})</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )

    def headline_html(self) -> str:
        """The headline metrics and the 80% rule verdict as HTML.

        Example:
            >>> "80% rule" in report.headline_html()
            True
        """
        verdict = (
            '<b style="color:#2e7d32">passes the 80% rule</b>'
            if self.passes_four_fifths
            else '<b style="color:#c62828">fails the 80% rule</b>'
        )
        items = "".join(f"<li>{m.replace('_', ' ')}: {_fmt(getattr(self, m))}</li>" for m in HEADLINE_METRICS)
        return (
            f'<div class="ray-deploy-fairness-headline"><ul>{items}</ul>'
            f"<p>disparate impact {_fmt(self.disparate_impact)} (min/max selection rate): {verdict}</p></div>"
        )

    def plot(self, metric: str = "selection_rate") -> Figure:
        """A bar per group for ``metric`` with 95% interval error bars (matplotlib Figure, no pyplot).

        Example:
            >>> report.plot("tpr").savefig("tpr.png")
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        _check_group_metric(metric)
        labels = [g.group for g in self.groups]
        values = [_nan(getattr(g, metric)) for g in self.groups]
        lows, highs = [], []
        for g, value in zip(self.groups, values, strict=True):
            ci = getattr(g, f"{metric}_ci")
            lows.append(0.0 if ci is None or math.isnan(value) else max(value - ci[0], 0.0))
            highs.append(0.0 if ci is None or math.isnan(value) else max(ci[1] - value, 0.0))
        fig = Figure(figsize=(max(3.0, 0.8 * len(labels) + 1.5), 2.4), dpi=80)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ax.bar(range(len(labels)), values, yerr=[lows, highs], capsize=4, color="tab:blue")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=7, rotation=20 if len(labels) > 4 else 0)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(metric.replace("_", " "), fontsize=8)
        ax.set_title(f"{metric.replace('_', ' ')} by {', '.join(self.sensitive)} (95% CI)", fontsize=8)
        ax.tick_params(labelsize=7)
        for i, value in enumerate(values):
            if math.isnan(value):
                ax.text(i, 0.02, "n/a", ha="center", fontsize=7)
        fig.tight_layout(pad=0.3)
        return fig

    def plot_png(self, metric: str = "selection_rate") -> bytes:
        """:meth:`plot` rendered as PNG bytes.

        Example:
            >>> report.plot_png()[:4]
            b'\\x89PNG'
        """
        buffer = io.BytesIO()
        self.plot(metric).savefig(buffer, format="png")
        return buffer.getvalue()

    def _repr_html_(self) -> str:
        png = base64.b64encode(self.plot_png("selection_rate")).decode("ascii")
        return (
            '<div class="ray-deploy-fairness-report">'
            f"{self.headline_html()}{self.table_html()}"
            f'<img alt="selection rate by group" src="data:image/png;base64,{png}"/></div>'
        )

    def compare(self, other: FairnessReport) -> pd.DataFrame:
        """Before (self) / after (other) table of the headline metrics with the change.

        Example:
            >>> report.compare(mitigated).loc["demographic_parity_difference", "change"]
            -0.25
        """
        before, after = self.summary(), other.summary()
        rows = {m: {"before": float(before[m]), "after": float(after[m])} for m in [*HEADLINE_METRICS]}
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame["change"] = frame["after"] - frame["before"]
        frame.loc["passes_four_fifths"] = [before["passes_four_fifths"], after["passes_four_fifths"], None]
        return frame


def fairness_metrics(
    y_true: Any,
    y_pred: Any,
    sensitive: pd.DataFrame | pd.Series,
    positive_label: Any = None,
    *,
    columns: list[str] | None = None,
) -> FairnessReport:
    """Compute a :class:`FairnessReport` of binary predictions with ``fairlearn.metrics``.

    Several sensitive columns are combined: a group is one combination, named ``"sex=F, age=old"``.

    Args:
        y_true: true labels (array-like, binary).
        y_pred: predicted labels (array-like, the same two labels).
        sensitive: the sensitive column(s), one row per label.
        positive_label: the favourable label; default 1 when present, else the larger label.
        columns: pick these columns of ``sensitive`` (a DataFrame holding more than the sensitive columns).

    Raises:
        ConfigError: more than two labels, NaN labels, lengths that differ, empty input, a missing column.

    Example:
        >>> r = fairness_metrics(y, model.predict(X), X[["sex", "age"]])
        >>> [g.group for g in r.groups]
        ['sex=F, age=old', 'sex=F, age=young', 'sex=M, age=old', 'sex=M, age=young']
    """
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    truth, pred = label_array(y_true, "y_true"), label_array(y_pred, "y_pred")
    frame = _sensitive_frame(sensitive, columns)
    if not len(truth) == len(pred) == len(frame):
        raise ConfigError(
            f"y_true, y_pred and sensitive must have the same length; got {len(truth)}, {len(pred)}, {len(frame)}"
        )
    if len(truth) == 0:
        raise ConfigError("cannot compute fairness metrics of no rows: y_true is empty")
    positive = _positive_label(truth, pred, positive_label)
    yt = (truth == positive).astype(int)
    yp = (pred == positive).astype(int)
    groups = group_names(frame)

    mf = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "accuracy": accuracy_score,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
        },
        y_true=yt,
        y_pred=yp,
        sensitive_features=groups,
    )
    by_group = mf.by_group
    metrics = []
    for name in by_group.index:
        mask = groups == name
        t, p = yt[mask], yp[mask]
        count, positives, negatives = int(mask.sum()), int(t.sum()), int((1 - t).sum())
        selected, correct = int(p.sum()), int((t == p).sum())
        true_pos, false_pos = int((p & t).sum()), int((p & (1 - t)).sum())
        row = by_group.loc[name]
        metrics.append(
            GroupMetrics(
                group=str(name),
                count=count,
                selection_rate=float(row["selection_rate"]),
                selection_rate_ci=_wilson(selected, count),
                accuracy=float(row["accuracy"]),
                accuracy_ci=_wilson(correct, count),
                tpr=float(row["tpr"]) if positives else None,
                tpr_ci=_wilson(true_pos, positives) if positives else None,
                fpr=float(row["fpr"]) if negatives else None,
                fpr_ci=_wilson(false_pos, negatives) if negatives else None,
            )
        )
    rates = [g.selection_rate for g in metrics]
    disparate_impact = min(rates) / max(rates) if max(rates) > 0 else float("nan")
    return FairnessReport(
        sensitive=[str(c) for c in frame.columns],
        positive_label=_json_scalar(positive),
        groups=metrics,
        demographic_parity_difference=float(demographic_parity_difference(yt, yp, sensitive_features=groups)),
        demographic_parity_ratio=float(demographic_parity_ratio(yt, yp, sensitive_features=groups)),
        equalized_odds_difference=float(equalized_odds_difference(yt, yp, sensitive_features=groups)),
        disparate_impact=float(disparate_impact),
        passes_four_fifths=bool(disparate_impact >= FOUR_FIFTHS),
        n=len(truth),
    )


def fairness_gate(
    before: FairnessReport | Mapping[str, Any],
    after: FairnessReport | Mapping[str, Any],
    *,
    max_increase: float = 0.05,
    metric: str = "demographic_parity_difference",
) -> GateResult:
    """Pass when ``metric`` did not worsen by more than ``max_increase`` from ``before`` to ``after`` (pure).

    For differences (``*_difference``) worse means larger; for ratios (``demographic_parity_ratio``,
    ``disparate_impact``) worse means smaller. Reports or dicts (:meth:`FairnessReport.summary` or
    :meth:`FairnessReport.to_json` output) are accepted. A NaN value fails the gate.

    Example:
        >>> fairness_gate({"demographic_parity_difference": 0.10}, {"demographic_parity_difference": 0.12}).passed
        True
        >>> fairness_gate({"disparate_impact": 0.9}, {"disparate_impact": 0.7}, metric="disparate_impact").passed
        False
    """
    if metric not in HEADLINE_METRICS:
        raise ConfigError(f"unknown fairness gate metric {metric!r}; choose one of {list(HEADLINE_METRICS)}")
    if not (isinstance(max_increase, int | float) and max_increase >= 0):
        raise ConfigError(f"max_increase must be a number >= 0; got {max_increase!r}")
    b, a = _metric_value(before, metric, "before"), _metric_value(after, metric, "after")
    limit = float(max_increase)
    if math.isnan(b) or math.isnan(a):
        return GateResult(False, metric, b, a, limit, f"{metric} is undefined (before={b}, after={a})")
    worsening = b - a if metric in _HIGHER_IS_FAIRER else a - b
    direction = "decreased" if metric in _HIGHER_IS_FAIRER else "increased"
    passed = worsening <= limit + 1e-12
    if worsening <= 0:
        reason = f"{metric} did not worsen ({b:.4g} -> {a:.4g})"
    elif passed:
        reason = f"{metric} {direction} by {worsening:.4g} ({b:.4g} -> {a:.4g}), within the allowed {limit:.4g}"
    else:
        reason = f"{metric} {direction} by {worsening:.4g} ({b:.4g} -> {a:.4g}), more than the allowed {limit:.4g}"
    return GateResult(passed, metric, b, a, limit, reason)


def record_report(name: str, version: str, report: FairnessReport) -> str:
    """Log ``report`` to MLflow for version ``version`` of deployment ``name``; returns the run id.

    A run in experiment ``ray-deploy`` gets the headline metrics as metrics (the 80% rule as 1/0), the full
    report as ``fairness_report.json`` and tags ``ray_deploy.deployment``/``ray_deploy.version``; the model
    version gets tags ``ray_deploy.fairness.<metric>`` and ``ray_deploy.fairness.run_id``.

    Raises:
        ModelNotFound: ``name`` has no version ``version``.

    Example:
        >>> run_id = record_report("churn", "3", fairness_metrics(y, model.predict(X), X["sex"]))
    """
    import mlflow
    from mlflow import MlflowClient

    from ray_deploy.config import Settings
    from ray_deploy.registry import _experiment_id, check_version, use_mlflow

    settings = Settings.from_env()
    use_mlflow(settings)
    version = str(version)
    check_version(name, version)
    summary = report.summary()
    with mlflow.start_run(experiment_id=_experiment_id(settings), run_name=f"fairness-{name}-v{version}") as run:
        mlflow.set_tags({"ray_deploy.deployment": name, "ray_deploy.version": version, "ray_deploy.kind": "fairness"})
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if not _is_nan(v)})
        mlflow.log_dict(report.to_json(), _REPORT_ARTIFACT)
        run_id = str(run.info.run_id)
    client = MlflowClient()
    for key, value in summary.items():
        client.set_model_version_tag(name, version, f"ray_deploy.fairness.{key}", _tag_value(value))
    client.set_model_version_tag(name, version, "ray_deploy.fairness.run_id", run_id)
    log.info("recorded the fairness report of %s v%s in run %s", name, version, run_id)
    return run_id


def require_columns(frame: pd.DataFrame, needed: list[str], what: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ConfigError(f"{what} lacks the column(s) {missing}; it has {list(frame.columns)}")


def label_array(values: Any, what: str) -> np.ndarray:
    if isinstance(values, pd.DataFrame):
        if values.shape[1] != 1:
            raise ConfigError(f"{what} must be one column of labels; got a DataFrame with {values.shape[1]} columns")
        values = values.iloc[:, 0]
    array = np.asarray(values)
    if array.ndim != 1:
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        else:
            raise ConfigError(f"{what} must be one label per row; got shape {array.shape}")
    missing = pd.isna(array)
    if missing.any():
        raise ConfigError(f"{what} has {int(missing.sum())} missing (NaN/None) labels; drop or fill those rows")
    return array


def _sensitive_frame(sensitive: pd.DataFrame | pd.Series, columns: list[str] | None) -> pd.DataFrame:
    if isinstance(sensitive, pd.Series):
        frame = sensitive.to_frame(name=sensitive.name if sensitive.name is not None else "sensitive")
    elif isinstance(sensitive, pd.DataFrame):
        frame = sensitive
    else:
        raise ConfigError(f"sensitive must be a pandas DataFrame or Series; got {type(sensitive).__name__}")
    if columns is not None:
        require_columns(frame, list(columns), "sensitive")
        frame = frame[list(columns)]
    if frame.shape[1] == 0:
        raise ConfigError("sensitive has no columns; pass the sensitive column(s), e.g. df[['sex']]")
    return frame.reset_index(drop=True)


def group_names(frame: pd.DataFrame) -> np.ndarray:
    """One group name per row: the value for one column, ``"a=x, b=y"`` for several."""
    if frame.shape[1] == 1:
        return frame.iloc[:, 0].astype(str).to_numpy()
    parts = [f"{c}=" + frame[c].astype(str) for c in frame.columns]
    combined = parts[0]
    for part in parts[1:]:
        combined = combined + ", " + part
    return combined.to_numpy()


def _positive_label(truth: np.ndarray, pred: np.ndarray, positive_label: Any) -> Any:
    labels = sorted(set(pd.unique(truth).tolist()) | set(pd.unique(pred).tolist()), key=sort_key)
    if len(labels) > 2:
        raise ConfigError(f"fairness metrics are for binary classification; found {len(labels)} labels {labels[:10]}")
    if positive_label is not None:
        if labels and positive_label not in labels and len(labels) == 2:
            raise ConfigError(f"positive_label {positive_label!r} is not one of the labels {labels}")
        return positive_label
    return 1 if 1 in labels else labels[-1]


def sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float | np.number) else (1, str(value))


def _wilson(successes: int, trials: int) -> tuple[float, float]:
    """Wilson 95% interval (statsmodels when installed, else scipy's binomtest)."""
    if trials == 0:
        return _NO_CI
    try:
        from statsmodels.stats.proportion import proportion_confint
    except ImportError:
        from scipy.stats import binomtest

        ci = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
        return (float(ci.low), float(ci.high))
    low, high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    return (float(low), float(high))


def _check_group_metric(metric: str) -> None:
    if metric not in GROUP_METRICS:
        raise ConfigError(f"unknown group metric {metric!r}; choose one of {list(GROUP_METRICS)}")


def _metric_value(report: FairnessReport | Mapping[str, Any], metric: str, what: str) -> float:
    if isinstance(report, FairnessReport):
        return float(getattr(report, metric))
    if isinstance(report, Mapping):
        if metric not in report:
            raise ConfigError(f"the {what} report has no {metric!r}; it has {sorted(report)}")
        return _float(report[metric])
    raise ConfigError(f"the {what} report must be a FairnessReport or a dict; got {type(report).__name__}")


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _ci(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = value
    return (_float(low), _float(high))


def _json_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _tag_value(value: float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(float(value))  # round-trips exactly: float(tag) == the report's value


def _fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _rate_cell(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if ci is None or math.isnan(ci[0]):
        return f"{value:.3f}"
    return f"{value:.3f} <small>[{ci[0]:.3f}, {ci[1]:.3f}]</small>"

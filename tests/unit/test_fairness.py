"""Fairness reports against hand-counted values, the gate, MLflow records, and fairlearn mitigation."""

from __future__ import annotations

import json

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from ray_deploy.errors import ConfigError, ModelNotFound
from ray_deploy.fairness import (
    FairnessReport,
    GateResult,
    fairness_gate,
    fairness_metrics,
    record_report,
)
from ray_deploy.mitigation import MitigatedModel, mitigate_model


def _known_disparity() -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """200 rows; each group has 50 positives and 50 negatives.

    Group A: 40 of its positives and 20 of its negatives are selected (rate 0.6, TPR 0.8, FPR 0.4, accuracy 0.7).
    Group B: 25 of its positives and 5 of its negatives are selected (rate 0.3, TPR 0.5, FPR 0.1, accuracy 0.7).
    """
    y_true, y_pred, group = [], [], []
    for name, tp, fp in (("A", 40, 20), ("B", 25, 5)):
        y_true += [1] * 50 + [0] * 50
        y_pred += [1] * tp + [0] * (50 - tp) + [1] * fp + [0] * (50 - fp)
        group += [name] * 100
    return np.array(y_true), np.array(y_pred), pd.DataFrame({"group": group})


@pytest.fixture(scope="module")
def report() -> FairnessReport:
    y_true, y_pred, sensitive = _known_disparity()
    return fairness_metrics(y_true, y_pred, sensitive)


def test_group_rates_and_headline_metrics_match_hand_counts(report: FairnessReport) -> None:
    a, b = report.groups
    assert (a.group, a.count, b.group, b.count) == ("A", 100, "B", 100)
    assert a.selection_rate == pytest.approx(0.6) and b.selection_rate == pytest.approx(0.3)
    assert a.accuracy == pytest.approx(0.7) and b.accuracy == pytest.approx(0.7)
    assert (a.tpr, a.fpr) == pytest.approx((0.8, 0.4))
    assert (b.tpr, b.fpr) == pytest.approx((0.5, 0.1))
    assert report.demographic_parity_difference == pytest.approx(0.3)
    assert report.demographic_parity_ratio == pytest.approx(0.5)
    assert report.disparate_impact == pytest.approx(0.5)
    assert report.equalized_odds_difference == pytest.approx(0.3)
    assert report.passes_four_fifths is False
    assert (report.n, report.sensitive, report.positive_label) == (200, ["group"], 1)


def test_wilson_intervals_contain_the_rates_and_match_scipy(report: FairnessReport) -> None:
    a = report.groups[0]
    for value, ci, k, n in (
        (a.selection_rate, a.selection_rate_ci, 60, 100),
        (a.accuracy, a.accuracy_ci, 70, 100),
        (a.tpr, a.tpr_ci, 40, 50),
        (a.fpr, a.fpr_ci, 20, 50),
    ):
        assert ci is not None and value is not None
        assert ci[0] < value < ci[1]
        expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert ci == pytest.approx((expected.low, expected.high))


def test_four_fifths_rule_passes_for_close_rates() -> None:
    y_true = np.array([1, 0] * 50)
    y_pred = np.array([1] * 45 + [0] * 5 + [1] * 40 + [0] * 10)
    report = fairness_metrics(y_true, y_pred, pd.Series(["A"] * 50 + ["B"] * 50, name="g"))
    assert report.disparate_impact == pytest.approx(0.8 / 0.9)
    assert report.passes_four_fifths is True


def test_tpr_is_none_for_a_group_without_positives_and_string_labels() -> None:
    y_true = np.array(["yes", "no", "no", "no"])
    y_pred = np.array(["yes", "no", "yes", "no"])
    report = fairness_metrics(y_true, y_pred, pd.Series(["A", "A", "B", "B"], name="g"), positive_label="yes")
    b = report.groups[1]
    assert (b.tpr, b.tpr_ci, b.fpr) == (None, None, 0.5)
    assert report.positive_label == "yes"
    # default positive label: the larger one when 1 is absent ("yes" > "no")
    assert fairness_metrics(y_true, y_pred, pd.Series(["A", "A", "B", "B"])).positive_label == "yes"


def test_several_sensitive_columns_are_combined() -> None:
    sensitive = pd.DataFrame({"sex": ["F", "F", "M", "M"], "age": ["old", "young", "old", "young"]})
    report = fairness_metrics([1, 0, 1, 0], [1, 0, 0, 0], sensitive)
    assert [g.group for g in report.groups] == [
        "sex=F, age=old",
        "sex=F, age=young",
        "sex=M, age=old",
        "sex=M, age=young",
    ]
    assert report.sensitive == ["sex", "age"]


@pytest.mark.parametrize(
    ("y_true", "y_pred", "sensitive", "match"),
    [
        ([0, 1, 2], [0, 1, 2], pd.Series(["a", "b", "c"]), "binary"),
        ([0, 1, 1], [0, 1], pd.Series(["a", "b", "c"]), "same length"),
        ([0, 1, np.nan], [0, 1, 1], pd.Series(["a", "b", "c"]), "missing"),
        ([], [], pd.Series([], dtype=str), "no rows"),
        ([0, 1], [0, 1], ["a", "b"], "DataFrame or Series"),
    ],
)
def test_bad_inputs_raise_config_errors(y_true: list, y_pred: list, sensitive: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        fairness_metrics(y_true, y_pred, sensitive)  # type: ignore[arg-type]


def test_missing_group_column_is_named() -> None:
    frame = pd.DataFrame({"sex": ["F", "M"], "x": [1, 2]})
    with pytest.raises(ConfigError, match=r"\['race'\]"):
        fairness_metrics([0, 1], [0, 1], frame, columns=["race"])
    assert fairness_metrics([0, 1], [0, 1], frame, columns=["sex"]).sensitive == ["sex"]


def test_json_round_trip_through_text(report: FairnessReport) -> None:
    text = json.dumps(report.to_json(), allow_nan=False)
    assert FairnessReport.from_json(json.loads(text)) == report
    with pytest.raises(ConfigError, match="not a fairness report"):
        FairnessReport.from_json({"groups": []})


def test_frame_summary_and_compare(report: FairnessReport) -> None:
    frame = report.to_frame()
    assert frame.loc["B", "tpr"] == pytest.approx(0.5)
    assert frame.loc["A", "selection_rate_ci_low"] < 0.6 < frame.loc["A", "selection_rate_ci_high"]
    assert report.summary() == pytest.approx(
        {
            "demographic_parity_difference": 0.3,
            "demographic_parity_ratio": 0.5,
            "equalized_odds_difference": 0.3,
            "disparate_impact": 0.5,
            "passes_four_fifths": False,
        }
    )
    fair = fairness_metrics([1, 0] * 2, [1, 0] * 2, pd.Series(["A", "A", "B", "B"], name="group"))
    table = report.compare(fair)
    assert table.loc["demographic_parity_difference", "change"] == pytest.approx(-0.3)
    assert table.loc["passes_four_fifths", "after"] == True  # noqa: E712


def test_plot_and_html(report: FairnessReport) -> None:
    from matplotlib.figure import Figure

    assert isinstance(report.plot(), Figure)
    assert isinstance(report.plot("fpr"), Figure)
    with pytest.raises(ConfigError, match="selection_rate"):
        report.plot("recall")
    html = report._repr_html_()
    assert "<table" in html and "<td>A</td>" in html and "0.600" in html
    assert "fails the 80% rule" in html and "data:image/png;base64," in html


def test_gate_passes_and_fails() -> None:
    key = "demographic_parity_difference"
    ok = fairness_gate({key: 0.10}, {key: 0.14})
    assert isinstance(ok, GateResult) and ok.passed and (ok.before, ok.after) == (0.10, 0.14)
    bad = fairness_gate({key: 0.10}, {key: 0.20})
    assert not bad.passed and "more than the allowed" in bad.reason
    assert fairness_gate({key: 0.3}, {key: 0.1}).passed  # an improvement
    assert fairness_gate({key: 0.1}, {key: 0.2}, max_increase=0.2).passed
    # ratios: worse means smaller
    assert not fairness_gate({"disparate_impact": 0.9}, {"disparate_impact": 0.7}, metric="disparate_impact").passed
    assert fairness_gate({"disparate_impact": 0.7}, {"disparate_impact": 0.9}, metric="disparate_impact").passed
    assert not fairness_gate({key: 0.1}, {key: None}).passed


def test_gate_takes_reports_and_their_json(report: FairnessReport) -> None:
    fair = fairness_metrics([1, 0] * 2, [1, 0] * 2, pd.Series(["A", "A", "B", "B"]))
    assert fairness_gate(report, fair).passed
    worse = fairness_gate(fair.to_json(), report.to_json())
    assert not worse.passed and worse.after == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="unknown fairness gate metric"):
        fairness_gate(report, fair, metric="accuracy")
    with pytest.raises(ConfigError, match="has no"):
        fairness_gate({}, fair)


def _biased_data(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], size=n)
    x1 = rng.normal(size=n) + np.where(sex == "M", 1.0, -0.5)
    x2 = rng.normal(size=n)
    y = (x1 + 0.5 * x2 + rng.normal(scale=0.5, size=n) > 0.3).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "sex": sex}), y


def test_threshold_mitigation_reduces_disparity_and_pickles() -> None:
    from sklearn.linear_model import LogisticRegression

    data, y = _biased_data()
    model = LogisticRegression().fit(data[["x1", "x2"]], y)
    before = fairness_metrics(y, model.predict(data[["x1", "x2"]]), data["sex"])
    mitigated = mitigate_model(model, data, y, ["sex"])
    assert isinstance(mitigated, MitigatedModel) and mitigated.features == ["x1", "x2"]
    predictions = mitigated.predict(data)
    after = fairness_metrics(y, predictions, data["sex"])
    assert before.demographic_parity_difference > 0.3
    assert after.demographic_parity_difference < before.demographic_parity_difference / 2
    np.testing.assert_array_equal(mitigated.predict(data), predictions)  # fixed random_state
    restored = cloudpickle.loads(cloudpickle.dumps(mitigated))
    np.testing.assert_array_equal(restored.predict(data), predictions)
    with pytest.raises(ConfigError, match=r"\['sex'\]"):
        mitigated.predict(data[["x1", "x2"]])
    np.testing.assert_array_equal(mitigated.predict(data[:3].to_dict("records")), predictions[:3])
    with pytest.raises(ConfigError, match="DataFrame"):
        mitigated.predict(data.to_numpy())


def test_exponentiated_gradient_mitigation() -> None:
    from sklearn.linear_model import LogisticRegression

    data, y = _biased_data(n=300)
    model = LogisticRegression().fit(data[["x1", "x2"]], y)
    before = fairness_metrics(y, model.predict(data[["x1", "x2"]]), data["sex"])
    mitigated = mitigate_model(model, data, y, ["sex"], method="exponentiated_gradient")
    after = fairness_metrics(y, mitigated.predict(data), data["sex"])
    assert after.demographic_parity_difference < before.demographic_parity_difference
    assert cloudpickle.loads(cloudpickle.dumps(mitigated)).predict(data[:5]).shape == (5,)


def test_mitigation_keeps_sensitive_columns_the_model_was_trained_on() -> None:
    from sklearn.linear_model import LogisticRegression

    data, y = _biased_data(n=200)
    data["is_m"] = (data["sex"] == "M").astype(int)
    model = LogisticRegression().fit(data[["x1", "x2", "is_m"]], y)
    mitigated = mitigate_model(model, data[["x1", "x2", "is_m"]], y, ["is_m"])
    assert mitigated.features == ["x1", "x2", "is_m"]
    assert set(np.unique(mitigated.predict(data))) <= {0, 1}


@pytest.mark.parametrize("method", ["threshold", "exponentiated_gradient"])
def test_mitigation_of_a_pipeline_that_uses_the_sensitive_column(method: str) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    data, y = _biased_data(n=300)
    encode = make_column_transformer((OneHotEncoder(), ["sex"]), remainder="passthrough")
    model = make_pipeline(encode, LogisticRegression()).fit(data, y)
    before = fairness_metrics(y, model.predict(data), data["sex"])
    mitigated = mitigate_model(model, data, y, ["sex"], method=method)
    assert mitigated.features == ["x1", "x2", "sex"]
    after = fairness_metrics(y, cloudpickle.loads(cloudpickle.dumps(mitigated.predict))(data), data["sex"])
    assert after.demographic_parity_difference < before.demographic_parity_difference


def test_mitigation_errors() -> None:
    from sklearn.linear_model import LogisticRegression

    data, y = _biased_data(n=100)
    model = LogisticRegression().fit(data[["x1", "x2"]], y)
    with pytest.raises(ConfigError, match="threshold.*exponentiated_gradient"):
        mitigate_model(model, data, y, ["sex"], method="reweigh")
    with pytest.raises(ConfigError, match="demographic_parity"):
        mitigate_model(model, data, y, ["sex"], constraints="parity")
    with pytest.raises(ConfigError, match=r"\['race'\]"):
        mitigate_model(model, data, y, ["race"])
    with pytest.raises(ConfigError, match="same length"):
        mitigate_model(model, data, y[:-1], ["sex"])
    with pytest.raises(ConfigError, match="binary"):
        mitigate_model(model, data, np.arange(100) % 3, ["sex"])


def test_record_report_writes_run_metrics_artifact_and_version_tags(mlflow_store: str, report: FairnessReport) -> None:
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    from ray_deploy.registry import register

    X = np.random.default_rng(0).normal(size=(20, 2))
    version = register(LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), "sklearn", "fair", sample_input=X[:5])
    run_id = record_report("fair", version, report)

    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.metrics["demographic_parity_difference"] == pytest.approx(0.3)
    assert run.data.metrics["passes_four_fifths"] == 0.0
    assert run.data.tags["ray_deploy.deployment"] == "fair" and run.data.tags["ray_deploy.version"] == version
    assert client.get_experiment(run.info.experiment_id).name == "ray-deploy"
    local = client.download_artifacts(run_id, "fairness_report.json")
    with open(local) as f:
        assert FairnessReport.from_json(json.load(f)) == report
    tags = client.get_model_version("fair", version).tags
    assert float(tags["ray_deploy.fairness.demographic_parity_difference"]) == report.demographic_parity_difference
    assert tags["ray_deploy.fairness.passes_four_fifths"] == "false"
    assert tags["ray_deploy.fairness.run_id"] == run_id
    with pytest.raises(ModelNotFound, match="versions"):
        record_report("fair", "99", report)

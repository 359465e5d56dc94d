"""SHAP explanations: additivity per explainer, explainer choice and errors, wire form, frames, plots, concat."""

from __future__ import annotations

import json
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

from ray_deploy.errors import ConfigError  # noqa: E402
from ray_deploy.explain import explain_model  # noqa: E402
from ray_deploy.explanation import Explanation, concat  # noqa: E402


def assert_additive(expl: Explanation, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(expl.base_values + expl.values.sum(axis=1), expl.predictions, rtol=rtol, atol=atol)


def churn_frame(rows: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, rows).round(),
            "income": rng.uniform(10, 150, rows).round(1),
            "plan": rng.choice(["basic", "pro", "team"], rows),
        }
    )
    labels = (((frame["age"] < 35) & (frame["plan"] == "basic")) | (frame["income"] < 40)).to_numpy().astype(int)
    return frame, labels


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    frame, labels = churn_frame()
    features = ColumnTransformer(
        [("num", StandardScaler(), ["age", "income"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])]
    )
    return Pipeline([("features", features), ("clf", LogisticRegression(max_iter=500))]).fit(frame, labels)


@pytest.fixture(scope="module")
def regression() -> tuple[np.ndarray, np.ndarray]:
    return make_regression(60, 4, random_state=0)


@pytest.fixture(scope="module")
def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()


@pytest.fixture(scope="module")
def pipeline_expl(pipeline: Pipeline) -> Explanation:
    frame, _ = churn_frame()
    return explain_model(pipeline, "sklearn", frame[:12], predict_method="predict_proba", background=frame[:20])


# ---- additivity per explainer --------------------------------------------------------------------------------


def test_random_forest_regressor_tree(regression: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = regression
    expl = explain_model(RandomForestRegressor(10, random_state=0).fit(X, y), "sklearn", X)
    assert expl.explainer == "tree"
    assert expl.values.shape == (60, 4) and expl.base_values.shape == (60,)
    assert expl.feature_names == ["x0", "x1", "x2", "x3"] and expl.output_names == ["prediction"]
    assert_additive(expl)


def test_gradient_boosting_classifier_probabilities_tree() -> None:
    X, y = make_classification(80, 5, random_state=0)
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, y)
    expl = explain_model(model, "sklearn", X, predict_method="predict_proba")
    assert expl.explainer == "tree"
    assert expl.values.shape == (80, 5, 2) and expl.output_names == ["class 0", "class 1"]
    np.testing.assert_allclose(expl.predictions, model.predict_proba(X))
    assert_additive(expl)
    margin = explain_model(model, "sklearn", X, predict_method="decision_function")
    assert margin.values.shape == (80, 5)
    assert_additive(margin)


def test_classifier_labels_are_refused() -> None:
    X, y = make_classification(40, 4, random_state=0)
    with pytest.raises(ConfigError, match="predict_proba"):
        explain_model(GradientBoostingClassifier(n_estimators=5).fit(X, y), "sklearn", X)


def test_linear_regression_linear(regression: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = regression
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    expl = explain_model(LinearRegression().fit(frame, y), "sklearn", frame)
    assert expl.explainer == "linear" and expl.feature_names == ["a", "b", "c", "d"]
    assert_additive(expl)


def test_torch_mlp_deep(mlp: torch.nn.Module) -> None:
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(1))
    expl = explain_model(mlp, "torch", x)
    assert expl.explainer == "deep" and expl.values.shape == (30, 4, 3)
    with torch.no_grad():
        np.testing.assert_allclose(expl.predictions, mlp(x).numpy(), rtol=1e-5, atol=1e-6)
    assert_additive(expl, rtol=1e-4, atol=1e-5)
    proba = explain_model(mlp, "torch", x, predict_method="predict_proba")
    np.testing.assert_allclose(proba.predictions.sum(axis=1), 1.0, rtol=1e-5)
    assert_additive(proba, rtol=1e-4, atol=1e-5)


def test_pipeline_with_string_column_in_input_features(pipeline: Pipeline, pipeline_expl: Explanation) -> None:
    frame, _ = churn_frame()
    expl = pipeline_expl
    assert expl.explainer == "exact"  # 3 input features: exact Shapley values over the background
    assert expl.feature_names == ["age", "income", "plan"]
    assert expl.values.shape == (12, 3, 2)
    np.testing.assert_allclose(expl.predictions, pipeline.predict_proba(frame[:12]))
    assert_additive(expl, rtol=1e-6)
    assert list(expl.data["plan"]) == list(frame["plan"][:12])


def test_permutation_is_additive_and_reproducible(pipeline: Pipeline) -> None:
    frame, _ = churn_frame()
    args: dict[str, Any] = {"predict_method": "predict_proba", "explainer": "permutation", "background": frame[:10]}
    first = explain_model(pipeline, "sklearn", frame[:4], **args)
    assert first.explainer == "permutation"
    assert_additive(first, rtol=1e-6)
    np.testing.assert_allclose(explain_model(pipeline, "sklearn", frame[:4], **args).values, first.values)


# ---- explainer choice --------------------------------------------------------------------------------------------


def test_explicit_override(regression: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = regression
    model = LinearRegression().fit(X, y)
    expl = explain_model(model, "sklearn", X[:5], explainer="kernel", background=X[:10])
    assert expl.explainer == "kernel"
    assert_additive(expl)
    exact = explain_model(model, "sklearn", X[:5], explainer="exact", background=X[:10])
    np.testing.assert_allclose(exact.values, explain_model(model, "sklearn", X[:5], background=X[:10]).values)


@pytest.mark.parametrize(
    ("explainer", "kind", "match"),
    [("tree", "sklearn", "linear"), ("deep", "sklearn", "fit"), ("linear", "torch", "deep"), ("magic", "sklearn", "")],
)
def test_explainer_mismatch(
    explainer: str, kind: str, match: str, regression: tuple[np.ndarray, np.ndarray], mlp: torch.nn.Module
) -> None:
    X, y = regression
    model = mlp if kind == "torch" else LinearRegression().fit(X, y)
    with pytest.raises(ConfigError, match=match or "explainers"):
        explain_model(model, kind, X[:3], explainer=explainer)


def test_linear_on_probabilities_is_refused(pipeline: Pipeline) -> None:
    X, y = make_classification(40, 4, random_state=0)
    with pytest.raises(ConfigError, match="log-odds"):
        explain_model(LogisticRegression().fit(X, y), "sklearn", X, explainer="linear", predict_method="predict_proba")
    with pytest.raises(ConfigError, match="does not fit"):
        explain_model(pipeline, "sklearn", churn_frame()[0][:3], explainer="tree", predict_method="predict_proba")


def test_callable_and_list_rows() -> None:
    def model(rows: pd.DataFrame) -> np.ndarray:
        return 2 * rows["x0"].to_numpy() - rows["x1"].to_numpy()

    expl = explain_model(model, "callable", [[1.0, 2.0], [3.0, 1.0], [0.0, 0.0]])
    assert expl.feature_names == ["x0", "x1"]
    assert_additive(expl)


# ---- the result ----------------------------------------------------------------------------------------------


def test_json_round_trip(pipeline_expl: Explanation) -> None:
    doc = json.loads(json.dumps(pipeline_expl.to_json()))
    back = Explanation.from_json(doc)
    np.testing.assert_array_equal(back.values, pipeline_expl.values)
    np.testing.assert_array_equal(back.base_values, pipeline_expl.base_values)
    np.testing.assert_array_equal(back.predictions, pipeline_expl.predictions)
    pd.testing.assert_frame_equal(back.data, pipeline_expl.data)
    assert (back.feature_names, back.explainer, back.output_names) == (
        pipeline_expl.feature_names,
        pipeline_expl.explainer,
        pipeline_expl.output_names,
    )
    with pytest.raises(ConfigError, match="not an explanation"):
        Explanation.from_json({"values": []})


def test_to_frame_and_importance(pipeline_expl: Explanation) -> None:
    frame = pipeline_expl.to_frame()
    assert frame.shape == (12, 5)
    assert list(frame.columns) == ["age", "income", "plan", "base_value", "prediction"]
    np.testing.assert_allclose(frame["prediction"], pipeline_expl.predictions[:, 1])
    np.testing.assert_allclose(pipeline_expl.to_frame(output=0)["prediction"], pipeline_expl.predictions[:, 0])
    importance = pipeline_expl.importance()
    assert sorted(importance.index) == ["age", "income", "plan"]
    assert importance.is_monotonic_decreasing
    with pytest.raises(ConfigError, match="output 5"):
        pipeline_expl.to_frame(output=5)


@pytest.mark.parametrize("kind", ["waterfall", "bar", "beeswarm", "dependence"])
@pytest.mark.parametrize("feature", ["income", "plan"])
def test_plots(kind: str, feature: str, pipeline_expl: Explanation) -> None:
    fig = pipeline_expl.plot(kind, row=2, feature=feature)
    assert isinstance(fig, Figure)
    assert fig.axes


def test_bad_plot_kind(pipeline_expl: Explanation) -> None:
    with pytest.raises(ConfigError, match="waterfall"):
        pipeline_expl.plot("pie")
    with pytest.raises(ConfigError, match="feature="):
        pipeline_expl.plot("dependence")


def test_repr_html(pipeline_expl: Explanation) -> None:
    html = pipeline_expl._repr_html_()
    assert "data:image/png;base64," in html and "plan" in html


def test_concat_of_halves_equals_whole(pipeline: Pipeline, regression: tuple[np.ndarray, np.ndarray]) -> None:
    frame, _ = churn_frame()
    args: dict[str, Any] = {"predict_method": "predict_proba", "background": frame[:20]}
    whole = explain_model(pipeline, "sklearn", frame[:10], **args)
    halves = concat([explain_model(pipeline, "sklearn", part, **args) for part in (frame[:5], frame[5:10])])
    np.testing.assert_allclose(halves.values, whole.values, rtol=1e-9)
    np.testing.assert_allclose(halves.base_values, whole.base_values, rtol=1e-9)
    pd.testing.assert_frame_equal(halves.data, whole.data)
    X, y = regression
    with pytest.raises(ConfigError, match="same features"):
        concat([whole, explain_model(LinearRegression().fit(X, y), "sklearn", X[:3])])


def test_rows_equal_to_the_whole_background_get_zero_shares_and_their_own_prediction() -> None:
    """Identical rows explained against themselves (no background given): shap's exact explainer raised IndexError
    on them (a 500 from /explain the fuzzer found); every feature's share is 0 and the base is the prediction."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, X["a"] > 0)
    same = X.iloc[[3, 3, 3]].reset_index(drop=True)
    for explainer in ("exact", "permutation"):
        out = explain_model(model, "sklearn", same, explainer=explainer, predict_method="predict_proba")
        assert np.allclose(out.values, 0) and np.allclose(out.base_values, model.predict_proba(same))
    mixed = X.iloc[[3, 4]].reset_index(drop=True)  # against a background of row 3 only: row 4 varies, row 3 not
    out = explain_model(
        model, "sklearn", mixed, background=X.iloc[[3, 3]], explainer="exact", predict_method="predict_proba"
    )
    assert np.allclose(out.values[0], 0) and not np.allclose(out.values[1], 0)
    assert np.allclose(np.asarray(out.base_values) + out.values.sum(axis=1), model.predict_proba(mixed))

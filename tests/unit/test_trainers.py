"""Built-in trainers, scoring and default search spaces, without Ray: trainers run in any process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_diabetes, load_iris, make_classification
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import Lasso, LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from ray_deploy.errors import ConfigError
from ray_deploy.trainers import (
    LABEL,
    builtin_trainer,
    default_metric,
    default_search_space,
    features,
    score,
    task_of_labels,
)


def split(frame: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    cut = int(len(shuffled) * 0.7)
    return shuffled[:cut], shuffled[cut:]


def iris_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    x, y = load_iris(return_X_y=True, as_frame=True)
    return split(x.assign(**{LABEL: y}))


def binary_frames(rows: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    x, y = make_classification(n_samples=rows, n_features=8, n_informative=5, random_state=3)
    return split(pd.DataFrame(x, columns=[f"f{i}" for i in range(8)]).assign(**{LABEL: y}))


def test_task_of_labels_and_default_metric() -> None:
    assert task_of_labels(pd.Series([0, 1, 2, 1])) == "classification"
    assert task_of_labels(["yes", "no"]) == "classification"
    assert task_of_labels(np.array([True, False])) == "classification"
    assert task_of_labels(pd.Series([0.5, 1.5, 2.25])) == "regression"
    assert task_of_labels(np.arange(500)) == "regression"  # integers with many values are a quantity
    assert default_metric("classification") == ("accuracy", "max")
    assert default_metric("regression") == ("rmse", "min")


def test_features_drops_the_label() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5], LABEL: [0, 1]})
    assert list(features(frame, "frame").columns) == ["a", "b"]
    array = features(frame, "array")
    assert array.dtype == np.float32 and array.shape == (2, 2)


def test_logistic_regression_yields_once_with_config_applied() -> None:
    train, valid = iris_frames()
    trainer = builtin_trainer(LogisticRegression(max_iter=500), task="classification")
    steps = list(trainer({"C": 0.01}, train, valid))
    assert len(steps) == 1 and trainer.planned_iterations({"C": 0.01}) == 1  # type: ignore[attr-defined]
    model, metrics = steps[0]
    assert model.C == 0.01
    assert set(metrics) >= {"accuracy", "f1"} and 0.5 < metrics["accuracy"] <= 1.0


def test_pipeline_random_forest_grows_in_rungs() -> None:
    train, valid = binary_frames()
    pipe = Pipeline([("scale", StandardScaler()), ("forest", RandomForestClassifier(random_state=0))])
    trainer = builtin_trainer(pipe, task="classification", predict_method="predict_proba")
    config = {"forest__n_estimators": 40, "forest__max_depth": 6}
    sizes, accuracies = [], []
    for model, metrics in trainer(config, train, valid):
        sizes.append(len(model[-1].estimators_))
        accuracies.append(metrics["accuracy"])
        assert "auc" in metrics
    assert sizes == [10, 20, 30, 40]
    assert trainer.planned_iterations(config) == 4  # type: ignore[attr-defined]
    assert accuracies[-1] > 0.75
    assert pipe[-1].n_estimators == 100 and not hasattr(pipe[-1], "estimators_")  # the user's model is untouched


@pytest.mark.parametrize(
    ("model", "param"),
    [
        (HistGradientBoostingClassifier(), "max_iter"),
        (GradientBoostingClassifier(), "n_estimators"),
    ],
)
def test_boosting_yields_per_rung(model: object, param: str) -> None:
    train, valid = binary_frames(200)
    steps = list(builtin_trainer(model, task="classification")({param: 20}, train, valid))
    assert len(steps) == 4
    assert all(0.5 < m["accuracy"] <= 1.0 for _, m in steps)


def test_bad_config_key_names_valid_params() -> None:
    train, valid = iris_frames()
    trainer = builtin_trainer(make_pipeline(StandardScaler(), LogisticRegression()), task="classification")
    with pytest.raises(ConfigError) as error:
        list(trainer({"C": 1.0}, train, valid))
    assert "'C'" in str(error.value) and "logisticregression__C" in str(error.value)


def test_ridge_regression() -> None:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    train, valid = split(x.assign(**{LABEL: y}))
    assert task_of_labels(train[LABEL]) == "regression"
    (model, metrics), *_ = list(builtin_trainer(Ridge(), task="regression")({"alpha": 0.1}, train, valid))
    assert set(metrics) == {"mae", "rmse", "r2"}
    assert metrics["r2"] > 0.3 and metrics["rmse"] < valid[LABEL].std()


class MLP(torch.nn.Module):
    def __init__(self, inputs: int = 8, classes: int = 2) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(inputs, 16), torch.nn.ReLU(), torch.nn.Linear(16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_torch_mlp_improves_over_epochs() -> None:
    train, valid = binary_frames()
    module = MLP()
    before = [p.detach().clone() for p in module.parameters()]
    trainer = builtin_trainer(module, task="classification", predict_method="predict_proba", input_kind="array")
    config = {"lr": 0.01, "batch_size": 32, "epochs": 8}
    steps = list(trainer(config, train, valid))
    assert len(steps) == 8 == trainer.planned_iterations(config)  # type: ignore[attr-defined]
    first, last = steps[0][1]["accuracy"], steps[-1][1]["accuracy"]
    assert last > first and last > 0.8
    model = steps[-1][0]
    assert isinstance(model, MLP) and next(model.parameters()).device.type == "cpu"
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))  # a copy was trained
    again = list(trainer(config, train, valid))[-1][1]
    assert again == steps[-1][1]  # seeded


def test_torch_regression_and_bad_key() -> None:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    train, valid = split(x.assign(**{LABEL: (y - y.mean()) / y.std()}))
    trainer = builtin_trainer(MLP(10, 1), task="regression", input_kind="array")
    steps = list(trainer({"lr": 0.01, "epochs": 5}, train, valid))
    assert steps[-1][1]["rmse"] < steps[0][1]["rmse"]
    with pytest.raises(ConfigError, match="unknown"):
        list(trainer({"momentum": 0.9}, train, valid))


def test_score_predict_proba_models() -> None:
    train, valid = iris_frames()
    model = LogisticRegression(max_iter=500).fit(features(train), train[LABEL])
    proba = score(model, valid, task="classification", predict_method="predict_proba")
    plain = score(model, valid, task="classification")
    assert proba["accuracy"] == plain["accuracy"] and "auc" in proba and "auc" not in plain
    # string labels: argmax maps through classes_
    named = train.assign(**{LABEL: train[LABEL].map({0: "setosa", 1: "versicolor", 2: "virginica"})})
    valid_named = valid.assign(**{LABEL: valid[LABEL].map({0: "setosa", 1: "versicolor", 2: "virginica"})})
    model = LogisticRegression(max_iter=500).fit(features(named), named[LABEL])
    assert score(model, valid_named, task="classification", predict_method="predict_proba")["accuracy"] > 0.8


def test_unknown_model_asks_for_a_trainer() -> None:
    with pytest.raises(ConfigError, match=r"trainer=my_trainer\(config, train_df, valid_df\)"):
        builtin_trainer(object(), task="classification")
    assert default_search_space(object()) == {}


@pytest.mark.parametrize(
    "model",
    [
        LogisticRegression(),
        RandomForestClassifier(),
        RandomForestRegressor(),
        GradientBoostingClassifier(),
        GradientBoostingRegressor(),
        HistGradientBoostingClassifier(),
        HistGradientBoostingRegressor(),
        Ridge(),
        Lasso(),
        SVC(),
        KNeighborsClassifier(),
        KNeighborsRegressor(),
        MLPClassifier(),
        MLPRegressor(),
        DecisionTreeClassifier(),
        DecisionTreeRegressor(),
        make_pipeline(StandardScaler(), RandomForestClassifier()),
    ],
    ids=lambda m: type(m).__name__ if not isinstance(m, Pipeline) else "Pipeline",
)
def test_default_search_space_keys_are_set_params_keys(model: object) -> None:
    from sklearn.base import clone

    space = default_search_space(model)
    assert space, f"no default space for {type(model).__name__}"
    valid = clone(model).get_params(deep=True)  # type: ignore[arg-type]
    assert set(space) <= set(valid)
    sample = {k: v.sample() if hasattr(v, "sample") else v for k, v in space.items()}
    clone(model).set_params(**sample)  # type: ignore[arg-type]


def test_torch_default_space() -> None:
    space = default_search_space(MLP())
    assert set(space) == {"lr", "batch_size", "epochs"} and space["epochs"] == 20

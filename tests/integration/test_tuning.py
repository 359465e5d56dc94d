"""run_tune on the real session cluster: built-in and custom trainers, ASHA, failing trials, stopping a run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from ray import tune
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression

import ray_deploy
from ray_deploy.documents import RetrainTrial
from ray_deploy.trainers import LABEL, builtin_trainer, score
from ray_deploy.tuning import run_tune

HALF_CPU = {"cpu": 0.5}


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    shuffled = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    cut = int(len(shuffled) * 0.7)
    return shuffled[:cut], shuffled[cut:]


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, pd.DataFrame]:
    x, y = load_iris(return_X_y=True, as_frame=True)
    return split(x.assign(**{LABEL: y}))


@pytest.fixture(scope="module")
def binary() -> tuple[pd.DataFrame, pd.DataFrame]:
    x, y = make_classification(n_samples=300, n_features=6, n_informative=4, random_state=5)
    return split(pd.DataFrame(x, columns=[f"f{i}" for i in range(6)]).assign(**{LABEL: y}))


def check_documents(trials: list[dict[str, Any]]) -> None:
    """Every trial dict is a valid RetrainTrial document."""
    for trial in trials:
        RetrainTrial.model_validate(trial)


def test_sklearn_builtin(cluster: ray_deploy.ClusterInfo, iris: Any, tmp_path: Path) -> None:
    train, valid = iris
    trainer = builtin_trainer(LogisticRegression(max_iter=300), task="classification")
    outcome = run_tune(
        trainer,
        {"C": tune.grid_search([1e-4, 1.0, 10.0])},
        train,
        valid,
        metric="accuracy",
        mode="max",
        num_samples=1,
        resources_per_trial=HALF_CPU,
        storage_path=str(tmp_path),
        name="sklearn",
    )
    check_documents(outcome.trials)
    assert len(outcome.trials) == 3 and outcome.errors == 0
    assert {t["status"] for t in outcome.trials} == {"TERMINATED"}
    assert not any(t["stopped_early"] for t in outcome.trials)
    assert outcome.best_config is not None and outcome.best_config["C"] in (1.0, 10.0)
    assert isinstance(outcome.best_model, LogisticRegression) and outcome.best_config["C"] == outcome.best_model.C
    assert outcome.best_metrics is not None and outcome.best_metrics["accuracy"] > 0.9
    again = score(outcome.best_model, valid, task="classification")["accuracy"]
    assert again == pytest.approx(outcome.best_metrics["accuracy"])
    assert outcome.best_trial_id in {t["trial_id"] for t in outcome.trials}


class Net(torch.nn.Module):
    """Defined in a test module: the checkpoint must carry it by value."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def test_torch_builtin_and_asha_stops_weak_trials(cluster: ray_deploy.ClusterInfo, binary: Any, tmp_path: Path) -> None:
    train, valid = binary
    trainer = builtin_trainer(Net(), task="classification", predict_method="predict_proba", input_kind="array")
    outcome = run_tune(
        trainer,
        {"lr": tune.grid_search([3e-2, 1e-6, 1e-6, 1e-6]), "epochs": 9, "batch_size": 32},
        train,
        valid,
        metric="accuracy",
        mode="max",
        num_samples=1,
        scheduler="asha",
        resources_per_trial=HALF_CPU,
        # the good trial (first in grid order) and one weak one run first, so the later weak trials meet a
        # recorded good result at ASHA's first rung whatever the machine's load
        max_concurrent_trials=2,
        storage_path=str(tmp_path),
        name="torch-asha",
    )
    check_documents(outcome.trials)
    assert outcome.errors == 0 and len(outcome.trials) == 4
    by_lr = {t["trial_id"]: t["config"]["lr"] for t in outcome.trials}
    assert outcome.best_trial_id is not None and by_lr[outcome.best_trial_id] == 3e-2
    assert outcome.best_metrics is not None and outcome.best_metrics["accuracy"] > 0.8
    good = next(t for t in outcome.trials if t["config"]["lr"] == 3e-2)
    assert good["iterations"] == 9 and not good["stopped_early"]
    weak = [t for t in outcome.trials if t["config"]["lr"] == 1e-6]
    assert any(t["stopped_early"] and t["iterations"] < 9 for t in weak), outcome.trials
    model = outcome.best_model
    assert isinstance(model, torch.nn.Module) and type(model).__name__ == "Net"
    again = score(model, valid, task="classification", predict_method="predict_proba", input_kind="array")
    assert again["accuracy"] == pytest.approx(outcome.best_metrics["accuracy"])


def test_custom_trainer_and_failing_trials(cluster: ray_deploy.ClusterInfo, iris: Any, tmp_path: Path) -> None:
    def my_trainer(config: dict[str, Any], train_df: pd.DataFrame, valid_df: pd.DataFrame) -> Any:
        """A plain custom trainer: one (model, metrics)."""
        if config["C"] < 0:
            raise ValueError(f"C must be positive, got {config['C']}")
        model = LogisticRegression(C=config["C"], max_iter=300)
        model.fit(train_df.drop(columns=[LABEL]), train_df[LABEL])
        return model, {"acc": float(model.score(valid_df.drop(columns=[LABEL]), valid_df[LABEL]))}

    def my_generator(config: dict[str, Any], train_df: pd.DataFrame, valid_df: pd.DataFrame) -> Iterator[Any]:
        """A custom generator of unknown length: it runs to its end, so no trial was stopped early."""
        for _ in range(3):
            yield my_trainer(config, train_df, valid_df)

    outcome = run_tune(
        my_trainer,
        {"C": tune.grid_search([-1.0, 0.5, 2.0])},
        *iris,
        metric="acc",
        mode="max",
        num_samples=1,
        scheduler="fifo",
        resources_per_trial=HALF_CPU,
        storage_path=str(tmp_path),
        name="custom",
    )
    check_documents(outcome.trials)
    assert outcome.errors == 1
    failed = next(t for t in outcome.trials if t["status"] == "ERROR")
    assert failed["config"] == {"C": -1.0} and failed["metric"] is None
    assert failed["error"] is not None and "ValueError: C must be positive, got -1.0" in failed["error"]
    done = [t for t in outcome.trials if t["status"] == "TERMINATED"]
    assert len(done) == 2 and all(t["iterations"] == 1 and not t["stopped_early"] for t in done)
    assert outcome.best_config is not None and outcome.best_config["C"] in (0.5, 2.0)
    assert isinstance(outcome.best_model, LogisticRegression)

    outcome = run_tune(
        my_generator,
        {"C": 1.0},
        *iris,
        metric="acc",
        mode="max",
        num_samples=1,
        resources_per_trial=HALF_CPU,
        storage_path=str(tmp_path),
        name="generator",
    )
    (trial,) = outcome.trials
    assert trial["status"] == "TERMINATED" and trial["iterations"] == 3 and not trial["stopped_early"], trial


def test_every_trial_failing_leaves_no_best(cluster: ray_deploy.ClusterInfo, iris: Any, tmp_path: Path) -> None:
    def broken(config: dict[str, Any], train_df: pd.DataFrame, valid_df: pd.DataFrame) -> Any:
        raise RuntimeError("no GPU driver here")

    outcome = run_tune(
        broken,
        {"x": tune.grid_search([1, 2])},
        *iris,
        metric="acc",
        mode="max",
        num_samples=1,
        resources_per_trial=HALF_CPU,
        storage_path=str(tmp_path),
        name="broken",
    )
    assert outcome.errors == 2 and outcome.best_model is None and outcome.best_trial_id is None
    assert all("RuntimeError: no GPU driver here" in (t["error"] or "") for t in outcome.trials)


def test_should_stop_ends_the_run(cluster: ray_deploy.ClusterInfo, iris: Any, tmp_path: Path) -> None:
    def slow(config: dict[str, Any], train_df: pd.DataFrame, valid_df: pd.DataFrame) -> Iterator[Any]:
        for step in range(200):
            time.sleep(0.05)
            yield {"step": step}, {"acc": step / 200}

    class Results(tune.Callback):
        """A user callback: sees every result in the driver."""

        def __init__(self) -> None:
            self.seen = 0

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any) -> None:
            self.seen += 1

    results = Results()
    outcome = run_tune(
        slow,
        {"x": tune.grid_search([1, 2])},
        *iris,
        metric="acc",
        mode="max",
        num_samples=1,
        scheduler="fifo",
        resources_per_trial=HALF_CPU,
        callbacks=[results],
        should_stop=lambda: results.seen >= 5,
        storage_path=str(tmp_path),
        name="stopped",
    )
    check_documents(outcome.trials)
    assert results.seen >= 5 and outcome.errors == 0 and len(outcome.trials) == 2
    ran = [t for t in outcome.trials if t["iterations"]]
    assert ran and all(t["iterations"] < 100 and t["stopped_early"] for t in ran), outcome.trials
    assert outcome.best_model is not None and outcome.best_model["step"] < 100


def test_needs_a_connected_ray(iris: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from ray_deploy.errors import ClusterError

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(ClusterError, match="connect"):
        run_tune(lambda c, t, v: (None, {}), {}, *iris, metric="a", mode="max", storage_path=str(tmp_path), name="x")

"""Run a trainer over a search space with Ray Tune on the connected cluster, and return the best model.

One job: a :class:`ray.tune.Tuner` around a trainer of :mod:`ray_deploy.trainers`. The frames travel through the
object store (``tune.with_parameters``), each trial gets ``resources_per_trial``, ASHA (or FIFO) schedules the
trials, every yield of the trainer is one Tune result with the model pickled (``ray.cloudpickle``) in its
checkpoint, and a failing trial is reported, never fatal::

    outcome = run_tune(builtin_trainer(model, task="classification"), default_search_space(model), train_df,
                       valid_df, metric="accuracy", mode="max", storage_path="/tmp/tune", name="retrain-1")
    outcome.best_model, outcome.best_metrics, [t["status"] for t in outcome.trials]

It runs in any driver connected to Ray (a notebook, a Ray Job's entrypoint), and never calls ``ray.init``.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import pandas as pd

from ray_deploy.errors import ClusterError, ConfigError

MODEL_FILE = "model.pkl"
"""The file in each checkpoint that holds the cloudpickled model."""
PLANNED = "planned_iterations"
"""The result key through which a trial tells how many iterations its trainer would run, when known."""
DEFAULT_MAX_T = 100
"""ASHA's ``max_t`` (iterations) when ``max_iterations`` is not given."""
REDUCTION_FACTOR = 3
"""ASHA keeps the top third at each rung (rungs at 1, 3, 9, 27, ... iterations)."""


@dataclass
class TuneOutcome:
    """What a Tune run found: the best trial's model, config and metrics, and every trial as it ended.

    ``trials`` holds one dict per trial shaped like :class:`ray_deploy.documents.RetrainTrial`; ``best_*`` are
    None when no trial reported a result.
    """

    best_model: Any | None
    best_config: dict[str, Any] | None
    best_metrics: dict[str, Any] | None
    best_trial_id: str | None
    trials: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0


def _planned_of(trainer: Any, config: dict[str, Any]) -> int | None:
    planned = getattr(trainer, "planned_iterations", None)
    if not callable(planned):
        return None
    try:
        return int(planned(config))
    except Exception:  # a config error surfaces when the trainer runs; here it just leaves the plan unknown
        return None


def _trainable(
    config: dict[str, Any],
    *,
    trainer: Any,
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    metric: str,
) -> None:
    """Tune's function trainable: one ``tune.report`` (metrics + pickled model checkpoint) per trainer yield."""
    from ray import cloudpickle, tune

    planned = _planned_of(trainer, config)
    produced = trainer(dict(config), train_df, valid_df)
    if isinstance(produced, tuple) and len(produced) == 2:
        steps: Iterable[Any] = [produced]
        planned = 1
    elif hasattr(produced, "__iter__") and not isinstance(produced, (dict, str, bytes)):
        steps = produced
    else:
        raise ConfigError(
            f"the trainer returned a {type(produced).__name__}; it must return (model, metrics) or yield it per "
            "iteration"
        )
    for step in steps:
        if not (isinstance(step, tuple) and len(step) == 2 and isinstance(step[1], dict)):
            raise ConfigError("the trainer must return or yield (model, metrics) with metrics a dict of numbers")
        model, metrics = step
        report = {k: float(v) for k, v in metrics.items() if isinstance(v, Real) and not isinstance(v, bool)}
        if metric not in report:
            raise ConfigError(
                f"the trainer's metrics {sorted(map(str, metrics))} lack a number for the tuned metric {metric!r}"
            )
        if planned is not None:
            report[PLANNED] = planned
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, MODEL_FILE), "wb") as out:
                cloudpickle.dump(model, out)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))


def _load_model(checkpoint: Any) -> Any:
    from ray import cloudpickle

    with checkpoint.as_directory() as folder, open(os.path.join(folder, MODEL_FILE), "rb") as source:
        return cloudpickle.load(source)


def _json_scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    number = getattr(value, "item", None)  # numpy scalars
    if callable(number):
        try:
            return _json_scalar(number())
        except (TypeError, ValueError):
            pass
    return str(value)


def _error_line(error: Any) -> str | None:
    """The last non-empty line of an error (the exception's type and message), or None."""
    if error is None:
        return None
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _make_stopper(should_stop: Callable[[], bool] | None, max_iterations: int | None) -> Any:
    from ray import tune

    class _Stopper(tune.Stopper):
        """Ends a trial at ``max_iterations``, and the whole run when ``should_stop()`` says so."""

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return max_iterations is not None and int(result.get("training_iteration", 0)) >= max_iterations

        def stop_all(self) -> bool:
            return bool(should_stop()) if should_stop is not None else False

    return _Stopper()


def _trial_doc(trial: Any, metric: str, max_iterations: int | None) -> dict[str, Any]:
    """One trial as a :class:`ray_deploy.documents.RetrainTrial` dict."""
    last = dict(trial.last_result or {})
    iterations = int(last.get("training_iteration") or 0)
    planned = last.get(PLANNED)
    if max_iterations is not None:
        planned = min(int(planned), max_iterations) if planned is not None else max_iterations
    status = str(trial.status)
    if status == "TERMINATED" and planned is not None:
        stopped_early = iterations < int(planned)
    else:  # a trainer of unknown length ran to its end when Tune saw it finish (done)
        stopped_early = status == "TERMINATED" and iterations > 0 and not last.get("done", False)
    value = last.get(metric)
    error = None
    if status == "ERROR":
        error = _error_line(_trial_error(trial)) or "the trial failed"
    return {
        "trial_id": str(trial.trial_id),
        "status": status if status in ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR") else "ERROR",
        "config": {str(k): _json_scalar(v) for k, v in (trial.config or {}).items()},
        "metric": float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None,
        "iterations": iterations,
        "stopped_early": bool(stopped_early),
        "error": error,
    }


def _trial_error(trial: Any) -> Any:
    """The text of a failed trial's error (its error file holds the traceback)."""
    path = getattr(trial, "error_file", None)
    if path and os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as source:
            return source.read()
    return getattr(trial, "error_msg", None)


def _collector() -> Any:
    from ray import tune

    class _Trials(tune.Callback):
        """Keeps every trial object Tune starts, in order, to describe them after the run."""

        def __init__(self) -> None:
            self.trials: dict[str, Any] = {}

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.trials.setdefault(trial.trial_id, trial)

        def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
            for trial in trials:
                self.trials.setdefault(trial.trial_id, trial)

    return _Trials()


def run_tune(
    trainer: Any,
    search_space: dict[str, Any],
    train_df: pd.DataFrame,
    valid_df: pd.DataFrame,
    *,
    metric: str,
    mode: str,
    num_samples: int = 8,
    scheduler: str = "asha",
    resources_per_trial: dict[str, float] | None = None,
    time_budget_s: float | None = None,
    max_iterations: int | None = None,
    callbacks: Iterable[Any] = (),
    should_stop: Callable[[], bool] | None = None,
    storage_path: str,
    name: str,
    seed: int = 0,
    max_concurrent_trials: int | None = None,
) -> TuneOutcome:
    """Tune ``trainer`` over ``search_space`` on the connected Ray cluster and load the best trial's model.

    Args:
        trainer: ``trainer(config, train_df, valid_df)`` returning or yielding ``(model, metrics)``.
        search_space: Tune distributions (and fixed values) by config key.
        train_df: Training rows, with the label column.
        valid_df: Validation rows the trainer scores on.
        metric: The metric to optimise (a key of the trainer's metrics).
        mode: ``"max"`` or ``"min"``.
        num_samples: Trials to run (samples of the search space).
        scheduler: ``"asha"`` (stops weak trials early) or ``"fifo"``.
        resources_per_trial: ``{"cpu": float, "gpu": float}`` per trial (fractions allowed); default one CPU.
        time_budget_s: Stop the whole run after this many seconds.
        max_iterations: Most results per trial (ASHA's ``max_t``; default :data:`DEFAULT_MAX_T`).
        callbacks: Tune callbacks (progress, MLflow) passed to ``RunConfig``.
        should_stop: Polled by Tune; when it returns True every trial stops.
        storage_path: Folder (or URI) for Tune's results and checkpoints.
        name: The experiment's name (a folder under ``storage_path``).
        seed: Seeds the search (``BasicVariantGenerator``), so a rerun samples the same configs.
        max_concurrent_trials: Most trials at once (default: as many as resources allow).

    Returns:
        The best trial's model, config, metrics and id (None when no trial produced a result) and every trial.

    Raises:
        ClusterError: When this process is not connected to Ray.
        ConfigError: For a bad metric mode, scheduler or resource request.

    Example:
        >>> outcome = run_tune(trainer, {"C": tune.loguniform(0.01, 10)}, train_df, valid_df, metric="accuracy",
        ...                    mode="max", num_samples=4, storage_path="/tmp/tune", name="iris")
        >>> outcome.best_metrics["accuracy"] > 0.9
        True
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    if not ray.is_initialized():
        raise ClusterError("run_tune needs a connected Ray cluster; call ray_deploy.connect() (or ray.init) first")
    if mode not in ("max", "min"):
        raise ConfigError(f"mode must be 'max' or 'min', not {mode!r}")
    if scheduler not in ("asha", "fifo"):
        raise ConfigError(f"scheduler must be 'asha' or 'fifo', not {scheduler!r}")
    resources = dict(resources_per_trial or {"cpu": 1.0})
    unknown = sorted(set(resources) - {"cpu", "gpu"})
    if unknown or any(float(v) < 0 for v in resources.values()):
        raise ConfigError(f"resources_per_trial takes non-negative 'cpu' and 'gpu' amounts, got {resources}")
    if max_iterations is not None and max_iterations < 1:
        raise ConfigError(f"max_iterations must be at least 1, got {max_iterations}")

    chosen = (
        ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_iterations or DEFAULT_MAX_T,
            grace_period=1,
            reduction_factor=REDUCTION_FACTOR,
        )
        if scheduler == "asha"
        else FIFOScheduler()
    )
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, trainer=trainer, train_df=train_df, valid_df=valid_df, metric=metric),
        {k: float(v) for k, v in resources.items()},
    )
    collector = _collector()
    # Keeping one checkpoint makes Tune snapshot its experiment state at every report, and warn about it each time
    # after the first few seconds: the snapshots are small and local, the warning is noise in a retrain's log.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    tuner = tune.Tuner(
        trainable,
        param_space=dict(search_space),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=num_samples,
            scheduler=chosen,
            search_alg=BasicVariantGenerator(random_state=seed),
            time_budget_s=time_budget_s,
            max_concurrent_trials=max_concurrent_trials,
            reuse_actors=True,  # a new trial reuses a finished trial's worker: no process start, no re-imports
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage_path),
            callbacks=[*callbacks, collector],
            stop=_make_stopper(should_stop, max_iterations),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            verbose=0,
        ),
    )
    grid = tuner.fit()
    trials = [_trial_doc(t, metric, max_iterations) for t in collector.trials.values()]
    outcome = TuneOutcome(None, None, None, None, trials=trials, errors=sum(t["status"] == "ERROR" for t in trials))
    # (result metrics, checkpoint, config) of every trial that reported a finite value of the metric
    reported = [(grid[i].metrics or {}, grid[i].checkpoint, grid[i].config or {}) for i in range(len(grid))]
    candidates = [
        (metrics, checkpoint, config)
        for metrics, checkpoint, config in reported
        if checkpoint is not None and isinstance(metrics.get(metric), (int, float)) and math.isfinite(metrics[metric])
    ]
    if not candidates:
        return outcome
    metrics, checkpoint, config = (max if mode == "max" else min)(candidates, key=lambda c: c[0][metric])
    outcome.best_model = _load_model(checkpoint)
    outcome.best_config = dict(config)
    outcome.best_metrics = {k: v for k, v in metrics.items() if k in _metric_keys(metrics, metric)}
    outcome.best_trial_id = str(metrics["trial_id"]) if metrics.get("trial_id") else None
    return outcome


_TUNE_KEYS = {
    "timestamp",
    "checkpoint_dir_name",
    "done",
    "training_iteration",
    "trial_id",
    "date",
    "time_this_iter_s",
    "time_total_s",
    "pid",
    "hostname",
    "node_ip",
    "config",
    "time_since_restore",
    "iterations_since_restore",
    "experiment_tag",
    PLANNED,
}


def _metric_keys(metrics: dict[str, Any], metric: str) -> set[str]:
    """The trainer's own metrics in a Tune result (Tune's bookkeeping keys left out)."""
    return {k for k, v in metrics.items() if k not in _TUNE_KEYS and isinstance(v, (int, float))} | {metric}

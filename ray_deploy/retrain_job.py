"""What a retrain's Ray Job runs (``ray-deploy retrain-run NAME RUN_ID``): data, Tune, registry, gate, rollout.

Steps, each published to the deployment's status document (``retrain`` section) as it happens:

1. take the lock (a named actor owned by this job), so a second retrain of the deployment is refused;
2. read the request (trainer, search space, data, :class:`RetrainSpec`) from the MLflow parent run;
3. gather labelled rows (:mod:`ray_deploy.retrain_data`) and split off the gate's held-out and recent rows;
4. run Tune (:func:`ray_deploy.tuning.run_tune`), one MLflow child run per trial (:class:`TrialLog`);
5. register the best model as a new version with its lineage and the alias ``challenger``, with its training
   data as the version's reference (so drift is then measured against what it learned);
6. score champion and new version on the held-out and recent rows (:func:`ray_deploy.retrain_gate.evaluation_gate`);
7. when it passes: deploy, shadow or canary it (``spec.then``); when it fails, drop the ``challenger`` alias.

Example:
    $ ray-deploy retrain-run churn 0f1e2d3c4b5a69788796a5b4c3d2e1f0
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

from ray_deploy.config import RetrainSpec, Settings
from ray_deploy.errors import ConfigError, RayDeployError
from ray_deploy.retraining import (
    FINAL,
    NAMESPACE,
    RESULT_ARTIFACT,
    SPEC_ARTIFACT,
    RetrainLock,
    lock_name,
    publish,
)

log = logging.getLogger(__name__)

PUBLISH_EVERY_S = 1.0
MAX_CAPTURED_ROWS = 200_000
CURVE_POINTS = 500


class Progress:
    """The retrain section as the job builds it; publishes at most once a second (and always on demand)."""

    def __init__(self, name: str, section: dict[str, Any]) -> None:
        self.name, self.section = name, section
        self._published = 0.0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the experiment's state
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def update(self, force: bool = False, **fields: Any) -> None:
        with self._lock:
            now = time.time()
            self.section.update(fields, updated_at=now)
            if force or now - self._published >= PUBLISH_EVERY_S:
                self._published = now
                publish(self.name, dict(self.section), wait=self.section.get("state") in FINAL)

    def trial(self, row: dict[str, Any]) -> None:
        """Put one trial's row in the section (new or updated), track the best so far, and publish."""
        with self._lock:
            trials = {t["trial_id"]: t for t in self.section["trials"]}
            trials[row["trial_id"]] = {**trials.get(row["trial_id"], {}), **row}
            self.section["trials"] = list(trials.values())
            self._best(row)
        self.update()

    def _best(self, row: dict[str, Any]) -> None:
        value = row.get("metric")
        if value is None:
            return
        curve = self.section["best_curve"]
        better = max if self.section["mode"] == "max" else min
        if not curve or better(curve[-1]["value"], value) != curve[-1]["value"]:
            self.section["best_trial"] = row["trial_id"]
            t = max(0.0, time.time() - self.section["started_at"])
            curve.append({"t": t, "value": float(value)})
            del curve[:-CURVE_POINTS]


def trial_row(trial: Any, metric: str, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``documents.RetrainTrial`` of a Tune trial as the driver sees it."""
    last = result or getattr(trial, "last_result", None) or {}
    value = last.get(metric)
    error = getattr(trial, "error_msg", None) or None
    return {
        "trial_id": str(trial.trial_id),
        "status": str(trial.status) if str(trial.status) in ("PENDING", "RUNNING", "PAUSED", "ERROR") else "TERMINATED",
        "config": {k: _scalar(v) for k, v in (trial.config or {}).items()},
        "metric": float(value) if isinstance(value, (int, float)) else None,
        "iterations": int(last.get("training_iteration", 0) or 0),
        "stopped_early": False,
        "error": str(error).strip().splitlines()[-1][:500] if error else None,
    }


def _scalar(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def trial_log(progress: Progress, experiment_id: str, parent_run_id: str, metric: str) -> Any:
    """A Tune callback: one MLflow child run per trial (params, metrics per iteration, status) and live progress."""
    from mlflow import MlflowClient
    from ray.tune import Callback

    class TrialLog(Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.runs: dict[str, str] = {}

        @property
        def client(self) -> Any:  # made when first used: Tune pickles its callbacks, a client does not pickle
            client = self.__dict__.get("_client")
            if client is None:
                client = self.__dict__["_client"] = MlflowClient()
            return client

        def __getstate__(self) -> dict[str, Any]:
            return {k: v for k, v in self.__dict__.items() if k != "_client"}

        def _run(self, trial: Any) -> str:
            run_id = self.runs.get(trial.trial_id)
            if run_id is None:
                tags = {"mlflow.parentRunId": parent_run_id, "ray_deploy.trial_id": str(trial.trial_id)}
                run = self.client.create_run(experiment_id, run_name=f"trial-{trial.trial_id}", tags=tags)
                run_id = self.runs[trial.trial_id] = run.info.run_id
                for key, value in (trial.config or {}).items():
                    self.client.log_param(run_id, key, _scalar(value))
            return run_id

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._run(trial)
            progress.trial({**trial_row(trial, metric), "status": "RUNNING"})

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any) -> None:
            run_id = self._run(trial)
            step = int(result.get("training_iteration", 0) or 0)
            for key, value in result.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key in _LOGGED or key == metric:
                    self.client.log_metric(run_id, key, float(value), step=step)
            progress.trial({**trial_row(trial, metric, result), "status": "RUNNING"})

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.client.set_terminated(self._run(trial), "FINISHED")
            progress.trial({**trial_row(trial, metric), "status": "TERMINATED"})

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            row = {**trial_row(trial, metric), "status": "ERROR"}
            run_id = self._run(trial)
            if row["error"]:
                self.client.set_tag(run_id, "error", row["error"])
            self.client.set_terminated(run_id, "FAILED")
            progress.trial(row)

    return TrialLog()


_LOGGED = frozenset({"accuracy", "precision", "recall", "f1", "auc", "mae", "rmse", "r2", "loss"})


def run(name: str, parent_run_id: str) -> int:
    """Run one retrain (see the module docstring); returns the process exit code."""
    import ray
    import ray.cloudpickle as cloudpickle
    from mlflow import MlflowClient

    from ray_deploy.cluster import connect
    from ray_deploy.registry import use_mlflow

    connect()
    settings = Settings.from_env()
    use_mlflow(settings)
    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    retrain_id = parent.data.tags["ray_deploy.retrain_id"]
    started_at = parent.info.start_time / 1000.0
    try:
        lock: Any = (
            ray.remote(RetrainLock)
            .options(name=lock_name(name), namespace=NAMESPACE, num_cpus=0)  # type: ignore[attr-defined]
            .remote(retrain_id, started_at)
        )
        ray.get(lock.who.remote(), timeout=60)
    except ValueError:  # the name is taken: another retrain of this deployment runs
        other: str = ray.get(ray.get_actor(lock_name(name), namespace=NAMESPACE).who.remote(), timeout=60)[0]
        message = f"a retrain of {name!r} is already running: {other}; this one ({retrain_id}) did not start"
        _finish_run(client, parent_run_id, "FAILED", None, message)
        print(message)
        return 3
    path = Path(client.download_artifacts(parent_run_id, SPEC_ARTIFACT))
    request = cloudpickle.loads(path.read_bytes())
    spec: RetrainSpec = request["spec"]
    from ray_deploy.retraining import pending_section

    section = pending_section(
        retrain_id,
        spec,
        request["trigger"],
        parent.data.tags.get("ray_deploy.parent_version"),
        parent_run_id,
        started_at,
    )
    progress = Progress(name, section)
    progress.update(force=True, state="running", message="gathering labelled data")
    try:
        outcome = _retrain(name, request, spec, progress, parent.info.experiment_id, parent_run_id, lock)
    except Exception as exc:  # every failure ends as a recorded, visible outcome, never a silent exit
        message = str(exc) if isinstance(exc, RayDeployError) else f"{type(exc).__name__}: {exc}"
        log.exception("retrain of %s failed", name)
        progress.update(force=True, state="failed", ended_at=time.time(), message=f"failed: {message}")
        _finish_run(client, parent_run_id, "FAILED", progress.section, message)
        _audit_finished(name, progress.section, "failed")
        return 1
    status = {"succeeded": "FINISHED", "cancelled": "KILLED"}.get(outcome, "FAILED")
    _finish_run(client, parent_run_id, status, progress.section, progress.section["message"])
    _audit_finished(name, progress.section, outcome)
    return 0


def _audit_finished(name: str, section: dict[str, Any], outcome: str) -> None:
    """The retrain's one ``retrain_finished`` event: the new version, the gate's verdict and numbers."""
    from ray_deploy import audit

    gate = section.get("gate") or {}
    audit.record(
        "retrain_finished",
        deployment=name,
        before={"version": section.get("parent_version")},
        after={"retrain_id": section.get("retrain_id"), "version": section.get("version"), "then": section.get("then")},
        outcome="ok" if outcome == "succeeded" else f"{outcome}: {section.get('message', '')}",
        evidence={"gate": gate} if gate else {},
    )


def _finish_run(client: Any, run_id: str, status: str, section: dict[str, Any] | None, message: str) -> None:
    """Leave the outcome in the parent run: its section as an artifact, the message as a tag, the run's status."""
    client.set_tag(run_id, "ray_deploy.outcome", message[:5000])
    if section is not None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / RESULT_ARTIFACT
            path.write_text(json.dumps(section))
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, status)


def _retrain(
    name: str,
    request: dict[str, Any],
    spec: RetrainSpec,
    progress: Progress,
    experiment_id: str,
    parent_run_id: str,
    lock: Any,
) -> str:
    """Steps 2-7; returns the final state (``succeeded``, ``failed`` or ``cancelled``)."""
    from ray_deploy import retrain_data as rd
    from ray_deploy.trainers import builtin_trainer, default_metric, default_search_space, task_of_labels
    from ray_deploy.tuning import run_tune

    parent_version = progress.section["parent_version"]
    champion = _Champion(name, parent_version)
    table, notes = rd.gather(request["data"], champion.reference, champion.captured)
    parts = rd.split(table)
    data_record = rd.record(table, parts)
    task = task_of_labels(table[rd.LABEL])
    metric, mode = default_metric(task)
    if spec.metric:
        metric = spec.metric
        mode = spec.mode or ("min" if spec.metric in ("rmse", "mae", "loss") else "max")
    trainer = request["trainer"]
    if trainer is None:
        trainer = builtin_trainer(
            champion.model(), task=task, predict_method=champion.predict_method, input_kind=champion.input_kind
        )
    space = request["search_space"]
    if space is None:
        space = default_search_space(champion.model()) if request["trainer"] is None else {}
    note = f" ({'; '.join(notes)})" if notes else ""
    progress.update(
        force=True,
        data=data_record,
        metric=metric,
        mode=mode,
        message=f"{spec.num_samples} Tune trials on {data_record['train_rows']} rows{note}",
    )
    client = _mlflow()
    params = {"metric": metric, "mode": mode, "scheduler": spec.scheduler, "num_samples": spec.num_samples}
    params["search_space"] = json.dumps({k: str(v) for k, v in space.items()})[:6000]
    for key, value in params.items():
        client.log_param(parent_run_id, key, value)
    client.log_dict(parent_run_id, data_record, "retrain_data.json")

    cancelled = _cancel_flag(lock)
    outcome = run_tune(
        trainer,
        space,
        rd.without_meta(parts.train),
        rd.without_meta(parts.valid),
        metric=metric,
        mode=mode,
        num_samples=spec.num_samples,
        scheduler=spec.scheduler,
        resources_per_trial=spec.resources_per_trial,
        time_budget_s=spec.time_budget_s,
        callbacks=[trial_log(progress, experiment_id, parent_run_id, metric)],
        should_stop=cancelled,
        storage_path=str(Settings.from_env().home / "tune"),
        name=progress.section["retrain_id"],
    )
    progress.update(trials=outcome.trials)
    if cancelled():
        progress.update(force=True, state="cancelled", ended_at=time.time(), message="cancelled; nothing registered")
        return "cancelled"
    if outcome.best_model is None:
        first = next((t["error"] for t in outcome.trials if t.get("error")), "no trial reported the metric")
        raise ConfigError(f"every trial failed ({outcome.errors} errors); first: {first}")
    best_value = (outcome.best_metrics or {}).get(metric)
    progress.update(
        force=True, best_trial=outcome.best_trial_id, message=f"registering the best trial ({metric} {best_value})"
    )
    for key, value in (outcome.best_metrics or {}).items():
        if _number(value) and key in _LOGGED | {metric}:
            client.log_metric(parent_run_id, key, float(value))
    version = _register(name, outcome, champion, parts, task, data_record, space, parent_run_id)
    progress.update(
        force=True, version=version, message=f"version {version} registered; scoring it against the champion"
    )
    gate = _gate(name, champion, version, parts, task, metric, mode, spec)
    client.log_dict(parent_run_id, gate, "gate.json")
    _tag_version(name, version, {"ray_deploy.gate": "passed" if gate["passed"] else "failed"})
    if not gate["passed"]:
        _drop_challenger(name)
        message = f"version {version} did not pass the gate and does not serve: {gate['reason']}"
        progress.update(force=True, gate=gate, state="failed", ended_at=time.time(), message=message)
        return "failed"
    progress.update(force=True, gate=gate, message=f"version {version} passed the gate; {spec.then}")
    done = _then(name, version, spec)
    progress.update(
        force=True, state="succeeded", ended_at=time.time(), message=f"version {version} passed the gate; {done}"
    )
    return "succeeded"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mlflow() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def _cancel_flag(lock: Any) -> Any:
    """``should_stop()`` for Tune: reads the lock's cancel flag, at most once a second."""
    import ray

    seen = {"at": 0.0, "value": False}

    def cancelled() -> bool:
        if not seen["value"] and time.time() - seen["at"] >= 1.0:
            seen["at"] = time.time()
            seen["value"] = bool(ray.get(lock.cancelled.remote(), timeout=30))
        return bool(seen["value"])

    return cancelled


class _Champion:
    """What the job needs of the serving version: its model, how it predicts, its reference and captured data."""

    def __init__(self, name: str, version: str | None) -> None:
        import mlflow
        from mlflow import MlflowClient

        from ray_deploy.capture_store import CaptureStore
        from ray_deploy.dataplane.schema import InputSchema
        from ray_deploy.reference import load_reference, load_reference_labels
        from ray_deploy.registry import model_uri

        if version is None:
            raise ConfigError(f"{name!r} serves no version yet; deploy a model first")
        self.name, self.version = name, version
        tags = MlflowClient().get_model_version(name, version).tags or {}
        self.kind = tags.get("ray_deploy.model_kind", "uri")
        self.predict_method = tags.get("ray_deploy.predict_method", "predict")
        self.uri = model_uri(name, version)
        schema = InputSchema.from_signature(mlflow.models.get_model_info(self.uri).signature)
        self.input_kind: Literal["frame", "array"] = (
            "array" if schema is not None and schema.columns is None else "frame"
        )
        loaded = load_reference(name, version)
        self.reference = None if loaded is None else (loaded[0], load_reference_labels(name, version))
        settings = Settings.from_env()
        store = CaptureStore(settings.capture_uri, name)
        self.captured = store.read(limit=MAX_CAPTURED_ROWS, with_labels=True)

    def model(self) -> Any:
        """The champion's model object (scikit-learn or torch), for the built-in trainers to start from."""
        from ray_deploy.dataplane.served_model import load_verified

        if self.kind == "sklearn":
            return load_verified(self.uri, "sklearn")
        if self.kind == "torch":
            return load_verified(self.uri, "pytorch", map_location="cpu")
        raise ConfigError(
            f"{self.name!r} serves a {self.kind} model, which has no built-in trainer; pass "
            "trainer=my_trainer(config, train_df, valid_df) -> (model, metrics)"
        )


def _register(
    name: str,
    outcome: Any,
    champion: _Champion,
    parts: Any,
    task: str,
    data_record: dict[str, Any],
    space: dict[str, Any],
    parent_run_id: str,
) -> str:
    """Register the best model as a new version: lineage tags, alias ``challenger``, training data as reference."""
    import pandas as pd

    from ray_deploy import registry
    from ray_deploy import retrain_data as rd
    from ray_deploy.config import DriftSpec
    from ray_deploy.package import model_kind
    from ray_deploy.reference import prepare_reference, reference_labels, save_reference
    from ray_deploy.trainers import features

    model = outcome.best_model
    kind = model_kind(model)
    trained = rd.without_meta(pd.concat([parts.train, parts.valid], ignore_index=True))
    sample = features(trained.head(5), champion.input_kind)
    version = registry.register(model, kind, name, sample, champion.predict_method)  # type: ignore[arg-type]
    lineage = {
        "ray_deploy.parent_version": str(champion.version),
        "ray_deploy.retrain_run": parent_run_id,
        "ray_deploy.trial_id": str(outcome.best_trial_id),
        "ray_deploy.best_config": json.dumps({k: _scalar(v) for k, v in (outcome.best_config or {}).items()})[:5000],
        "ray_deploy.search_space": json.dumps({k: str(v) for k, v in space.items()})[:5000],
        "ray_deploy.data_rows": str(data_record["rows"]),
        "ray_deploy.data_hash": data_record["content_hash"],
        "ray_deploy.data_range": f"{data_record['since']}..{data_record['until']}",
        "ray_deploy.task": task,
    }
    _tag_version(name, version, lineage)
    run_id = _mlflow().get_model_version(name, version).run_id
    for key, value in (outcome.best_metrics or {}).items():  # the version's recorded metrics (versions() shows them)
        if run_id and _number(value) and key in _LOGGED:
            _mlflow().log_metric(run_id, key, float(value))
    _mlflow().set_registered_model_alias(name, "challenger", version)
    inputs = features(trained, champion.input_kind)
    spec = DriftSpec()
    frame, predictions = prepare_reference(model, kind, name, version, inputs, champion.predict_method, spec)
    save_reference(name, version, frame, predictions, reference_labels(trained[rd.LABEL], len(trained), spec))
    return version


def _tag_version(name: str, version: str, tags: dict[str, str]) -> None:
    client = _mlflow()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def _drop_challenger(name: str) -> None:
    from ray_deploy.rollouts import _drop_challenger_alias

    _drop_challenger_alias(name)


def _gate(
    name: str,
    champion: _Champion,
    version: str,
    parts: Any,
    task: str,
    metric: str,
    mode: str,
    spec: RetrainSpec,
) -> dict[str, Any]:
    """Score the champion and the new version (both loaded from the registry, as they serve) on the gate's rows."""
    import numpy as np

    from ray_deploy import retrain_data as rd
    from ray_deploy.dataplane.served_model import load_verified
    from ray_deploy.performance import METRICS, model_metrics
    from ray_deploy.registry import model_uri
    from ray_deploy.retrain_gate import evaluation_gate
    from ray_deploy.trainers import default_metric, features

    if metric not in METRICS[task]:  # a custom trainer's own metric: the gate compares the task's standard one
        metric, mode = default_metric(task)  # type: ignore[arg-type]
    models = {
        "champion": load_verified(champion.uri),
        "challenger": load_verified(model_uri(name, version)),
    }
    scores: list[tuple[str, int, float | None, float | None]] = []
    for dataset, frame in (("held_out", parts.held_out), ("recent", parts.recent)):
        if frame.empty:
            scores.append((dataset, 0, None, None))
            continue
        inputs = features(rd.without_meta(frame), champion.input_kind)
        labels = frame[rd.LABEL].to_numpy()
        values: dict[str, float | None] = {}
        for who, model in models.items():
            try:
                predictions = np.asarray(model.predict(inputs))
                values[who] = model_metrics(task, labels, predictions).get(metric)  # type: ignore[arg-type]
            except Exception as exc:  # a model that cannot score these rows loses this comparison
                log.warning("retrain of %s: the %s could not be scored on %s rows: %s", name, who, dataset, exc)
                values[who] = None
        scores.append((dataset, len(frame), values["champion"], values["challenger"]))
    return evaluation_gate(metric, mode, scores, spec.min_improvement, spec.max_regression)  # type: ignore[arg-type]


def _then(name: str, version: str, spec: RetrainSpec) -> str:
    """Act on a version that passed the gate; returns what was done, for the message."""
    from ray_deploy import rollouts

    if spec.then == "register":
        return f"registered with the alias challenger (promote it with ray_deploy.get({name!r}).promote())"
    if spec.then == "deploy" and not _requires_approval(name):
        rollouts.switch_to(name, version)
        return f"version {version} now serves"
    if spec.then == "shadow":
        rollouts.start(name, "shadow", version)
        return "shadow started (it sees a copy of the traffic)"
    rollouts.start(name, "canary", version, spec=spec.rollout)
    started = f"canary started ({', '.join(f'{s:.0%}' for s in spec.rollout.steps)})"
    if spec.then == "deploy":  # a deployment that requires approval takes new versions only through a rollout
        return f"{started} instead of a direct deploy: {name!r} requires approval, which its last step waits for"
    return started


def _requires_approval(name: str) -> bool:
    from ray_deploy.deployment import Deployment

    return Deployment(name).options.require_approval

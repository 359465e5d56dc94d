"""Retrain a deployment with Ray Tune, in a Ray Job in the cluster, and judge the result against the champion.

:func:`retrain` records the request as an MLflow parent run (the trainer, search space and data travel as one
pickled artifact of that run, so the job finds them wherever it runs), then submits the job
``ray-deploy-retrain-<name>-<id>`` (its name in the Ray dashboard's jobs view), which runs
:func:`ray_deploy.retrain_job.run`: gather labelled data, Tune trials (one MLflow child run each), register the best
model as a new version with the alias ``challenger`` and its lineage, score it against the champion on held-out and
recent labelled rows (:mod:`ray_deploy.retrain_gate`), and, when it passes, deploy, shadow or canary it.

The job holds a named actor while it runs, so two retrains of one deployment never run at once; the second is
refused with the first's id. The notebook may close: the job goes on, and its progress is in the deployment's
status document (``retrain`` section); :class:`RetrainResult` re-attaches by name.

Example:
    >>> result = retrain("churn", num_samples=4, resources_per_trial={"cpu": 0.5}, then="canary")
    >>> result.state, result.gate["passed"], result.version
    ('succeeded', True, '5')
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ray_deploy import audit
from ray_deploy.config import RetrainSpec, Settings
from ray_deploy.errors import ConfigError, NotReady

log = logging.getLogger(__name__)

NAMESPACE = "ray_deploy_retrain"
SPEC_ARTIFACT = "retrain_request.pkl"
RESULT_ARTIFACT = "retrain.json"
FINAL = frozenset({"succeeded", "failed", "cancelled"})
TAG_OF = "ray_deploy.retrain_of"
TAG_ID = "ray_deploy.retrain_id"


def lock_name(name: str) -> str:
    """The named actor a running retrain of ``name`` holds."""
    return f"ray-deploy-retrain-{name}"


def running_lock(name: str) -> Any:
    """The lock actor of the retrain of ``name`` that runs now, or None."""
    import ray

    try:
        return ray.get_actor(lock_name(name), namespace=NAMESPACE)
    except ValueError:
        return None


class RetrainLock:
    """Held (as a named actor owned by the job) while a retrain runs; carries the cancel flag."""

    def __init__(self, retrain_id: str, started_at: float) -> None:
        self.retrain_id, self.started_at, self._cancelled = retrain_id, started_at, False

    def who(self) -> tuple[str, float]:
        return self.retrain_id, self.started_at

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


def pending_section(
    retrain_id: str, spec: RetrainSpec, trigger: str, parent_version: str | None, run_id: str, now: float
) -> dict[str, Any]:
    """The ``documents.RetrainSection`` of a retrain that was just submitted.

    Example:
        >>> pending_section("ray-deploy-retrain-iris-0a1b", RetrainSpec(), "manual", "3", "abc", 0.0)["state"]
        'pending'
    """
    return {
        "retrain_id": retrain_id,
        "state": "pending",
        "trigger": trigger,
        "started_at": now,
        "updated_at": now,
        "ended_at": None,
        "time_budget_s": spec.time_budget_s,
        "metric": spec.metric or "",
        "mode": spec.mode or "max",
        "scheduler": spec.scheduler,
        "num_samples": spec.num_samples,
        "parent_version": parent_version,
        "trials": [],
        "best_curve": [],
        "best_trial": None,
        "data": None,
        "version": None,
        "gate": None,
        "then": spec.then,
        "mlflow_run_id": run_id,
        "message": f"submitted as Ray Job {retrain_id}; waiting for the cluster",
    }


def publish(name: str, section: dict[str, Any] | None, wait: bool = False) -> None:
    """Put the retrain section in the deployment's status document (through its Monitor); never raises.

    ``wait``: return once the Monitor has it (a job's last word must not be lost when the job exits right after).
    """
    from ray_deploy.serve_api import deployment_handle

    try:
        response = deployment_handle(name, "Monitor").set_retrain.remote(section)
        if wait:
            response.result(timeout_s=30)
    except Exception:  # the status document is a view: a missing Monitor must not fail the retrain
        log.warning("retrain of %s: could not publish its progress", name, exc_info=True)


def check_resources(resources: dict[str, float]) -> None:
    """Refuse trial resources the cluster can never give (Tune would wait forever)."""
    import ray

    total = ray.cluster_resources()
    for key, ray_key in (("cpu", "CPU"), ("gpu", "GPU")):
        want, have = resources.get(key, 0.0), float(total.get(ray_key, 0.0))
        if want > have:
            raise ConfigError(
                f"each trial asks for {want:g} {ray_key} but the cluster has {have:g}; "
                f"lower resources_per_trial[{key!r}]" + (" or use a cluster with GPUs" if key == "gpu" else "")
            )


def retrain(
    name: str,
    *,
    trainer: Any = None,
    search_space: dict[str, Any] | None = None,
    data: Any = None,
    metric: str | None = None,
    mode: str | None = None,
    num_samples: int = 8,
    scheduler: str = "asha",
    resources_per_trial: dict[str, float] | None = None,
    time_budget_s: float | None = None,
    then: str = "register",
    min_improvement: float = 0.0,
    max_regression: float = 0.02,
    rollout: Any = None,
    wait: bool = True,
    timeout_s: float | None = None,
    trigger: str = "manual",
) -> RetrainResult:
    """Retrain deployment ``name`` with Ray Tune in the cluster; returns its :class:`RetrainResult`.

    Args:
        trainer: ``trainer(config, train_df, valid_df) -> (model, metrics)`` (or a generator yielding that per
            epoch, so ASHA can stop weak trials); default: the built-in trainer of the serving model's kind
            (scikit-learn estimators and pipelines, torch modules). Frames hold the features and a ``label`` column.
        search_space: Tune's search space (``ray.tune`` distributions); default: one for common estimators.
        data: Extra labelled rows: a DataFrame with a ``label`` column or ``(X, y)``. Always added: the reference
            data when deployed with ``reference_labels``, and captured traffic that has feedback labels.
        metric, mode: What Tune optimizes; default accuracy/max for classifiers, rmse/min for regression.
        num_samples, scheduler, resources_per_trial, time_budget_s: Tune's trials, ``asha`` or ``fifo``, each
            trial's ``{"cpu": .., "gpu": ..}`` (fractions allowed) and time budget.
        then: What a new version that passes the evaluation gate does: ``register`` (alias challenger only),
            ``deploy``, ``shadow`` or ``canary`` (with ``rollout``, a :class:`RolloutSpec`).
        min_improvement, max_regression: The evaluation gate: the new version must score ``min_improvement``
            better than the champion on recent labelled traffic and at most ``max_regression`` worse on held-out
            rows (with no recent labels: ``min_improvement`` better on held-out rows).
        wait: Wait until it ends (else return at once; ``%retrain`` shows a live panel).
        timeout_s: With ``wait``: give up waiting (the retrain goes on) after this many seconds.
        trigger: What started it (``manual``; the auto-retrain policy passes its trigger).

    Raises:
        ConfigError: on bad options, trial resources the cluster lacks, or when a retrain of ``name`` runs.

    Example:
        >>> retrain("iris", num_samples=4, resources_per_trial={"cpu": 0.5}).gate["reason"]
        'accuracy 0.967 vs champion 0.900 on 30 held-out rows (+0.067)'
    """
    import ray.cloudpickle as cloudpickle
    from mlflow import MlflowClient

    from ray_deploy.cluster import connect
    from ray_deploy.config import RolloutSpec, parse_spec
    from ray_deploy.deployment import Deployment
    from ray_deploy.registry import _experiment_id, use_mlflow

    spec = parse_spec(
        RetrainSpec,
        num_samples=num_samples,
        scheduler=scheduler,
        resources_per_trial=resources_per_trial or {"cpu": 1.0, "gpu": 0.0},
        time_budget_s=time_budget_s,
        metric=metric,
        mode=mode,
        then=then,
        min_improvement=min_improvement,
        max_regression=max_regression,
        rollout=rollout if rollout is not None else RolloutSpec(),
    )
    if trigger not in ("manual", "drift", "schedule", "performance"):
        raise ConfigError(f"trigger must be manual, drift, schedule or performance, got {trigger!r}")
    connect()
    settings = Settings.from_env()
    use_mlflow(settings)
    parent_version = Deployment(name).version  # raises ModelNotFound for an unknown name
    check_resources(spec.resources_per_trial)
    _refuse_if_running(name)
    retrain_id = f"ray-deploy-retrain-{name}-{uuid.uuid4().hex[:8]}"
    client = MlflowClient()
    run = client.create_run(
        _experiment_id(settings),
        run_name=f"retrain-{name}",
        tags={TAG_OF: name, TAG_ID: retrain_id, "ray_deploy.parent_version": str(parent_version), "trigger": trigger},
    )
    request = {"trainer": trainer, "search_space": search_space, "data": data, "spec": spec, "trigger": trigger}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / SPEC_ARTIFACT
        path.write_bytes(cloudpickle.dumps(request))
        client.log_artifact(run.info.run_id, str(path))
    publish(name, pending_section(retrain_id, spec, trigger, parent_version, run.info.run_id, time.time()))
    after = {"retrain_id": retrain_id, "trigger": trigger, "then": spec.then, "num_samples": spec.num_samples}
    try:
        _submit(name, retrain_id, run.info.run_id, settings)
    except Exception as exc:
        audit.record(
            "retrain_started",
            deployment=name,
            before={"version": parent_version},
            after=after,
            outcome=f"failed: {exc}",
        )
        raise
    audit.record("retrain_started", deployment=name, before={"version": parent_version}, after=after)
    result = RetrainResult(name, retrain_id)
    return result.wait(timeout_s) if wait else result


def _refuse_if_running(name: str) -> None:
    import ray

    lock = running_lock(name)
    if lock is None:
        return
    try:
        retrain_id, started_at = ray.get(lock.who.remote(), timeout=30)
    except ray.exceptions.RayActorError:  # it ended meanwhile
        return
    raise ConfigError(
        f"a retrain of {name!r} is already running: {retrain_id}, started {time.time() - started_at:.0f} s ago; "
        f"wait for it or cancel it with ray_deploy.get({name!r}).last_retrain.cancel()"
    )


def _submit(name: str, retrain_id: str, run_id: str, settings: Settings) -> None:
    """Submit the Ray Job that runs the retrain (``ray-deploy retrain-run NAME RUN_ID``)."""
    from ray_deploy.dashboard import DashboardClient, dashboard_url, is_remote, run_sync
    from ray_deploy.jobs import entrypoint

    env = settings.to_env()
    env[audit.WHO_ENV] = audit.current_identity()  # its retrain_finished event names who started it
    # the job's driver joins exactly this cluster's GCS (with two local clusters on one machine, the one the job
    # manager names is not always the one a driver finds)
    env["RAY_ADDRESS"] = _gcs_address() or env.get("RAY_ADDRESS", "")
    if not env["RAY_ADDRESS"]:
        env.pop("RAY_ADDRESS")
    python = os.environ.get("RAY_DEPLOY_JOB_PYTHON") or ("python" if is_remote(settings) else sys.executable)
    command = entrypoint(python, "retrain-run", name, [run_id], env)
    metadata = {"ray_deploy.action": "retrain", "ray_deploy.name": name}
    run_sync(DashboardClient(dashboard_url(settings)).submit_job(command, retrain_id, metadata))


def _gcs_address() -> str | None:
    """The GCS address of the cluster this process is connected to, as the cluster's own nodes reach it."""
    import ray

    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # not connected, or a client connection that does not know it
        return None


class RetrainResult:
    """A retrain of a deployment, running or ended; re-attach with ``ray_deploy.get(name).last_retrain``.

    Example:
        >>> result = RetrainResult("churn", "ray-deploy-retrain-churn-0a1b2c3d")
        >>> result.status()["message"]
        'trial 5/8 running; best accuracy 0.912 (trial 0a1b_00003)'
    """

    def __init__(self, name: str, retrain_id: str) -> None:
        self.name, self.retrain_id = name, retrain_id

    def __repr__(self) -> str:
        return f"RetrainResult(name={self.name!r}, retrain_id={self.retrain_id!r})"

    def status(self) -> dict[str, Any]:
        """The retrain's section (``documents.RetrainSection``): live from the status document, else from MLflow."""
        from ray_deploy.deployment import Deployment

        section = Deployment(self.name).status().get("retrain")
        if section is None or section["retrain_id"] != self.retrain_id:
            section = _recorded(self.name, self.retrain_id)
        if section is None:
            raise NotReady(f"no record of retrain {self.retrain_id} of {self.name!r}")
        return _reconciled(self.name, dict(section))

    @property
    def state(self) -> str:
        return str(self.status()["state"])

    @property
    def version(self) -> str | None:
        """The registered new version (alias ``challenger`` until it serves), or None."""
        return self.status()["version"]

    @property
    def gate(self) -> dict[str, Any] | None:
        """The evaluation gate's verdict: ``passed``, per-data-set ``rows``, ``reason``."""
        return self.status()["gate"]

    @property
    def best_config(self) -> dict[str, Any] | None:
        """The best trial's hyperparameters, or None."""
        section = self.status()
        best = next((t for t in section["trials"] if t["trial_id"] == section["best_trial"]), None)
        return None if best is None else dict(best["config"])

    @property
    def trials(self) -> Any:
        """Every trial as a DataFrame: id, status, metric, iterations, stopped early, error, then the config."""
        import pandas as pd

        rows = [
            {**{k: v for k, v in t.items() if k != "config"}, **{f"config.{k}": v for k, v in t["config"].items()}}
            for t in self.status()["trials"]
        ]
        return pd.DataFrame(rows)

    def wait(self, timeout_s: float | None = None, poll_s: float = 1.0) -> RetrainResult:
        """Block until the retrain ends (or ``timeout_s`` passes; it goes on in the cluster); returns self.

        Raises:
            ConfigError: when the job could not start because another retrain of the deployment was running.
        """
        deadline = None if timeout_s is None else time.time() + timeout_s
        while True:
            section = self.status()
            if section["state"] in FINAL:
                if section["state"] == "failed" and "already running" in section["message"]:
                    raise ConfigError(section["message"])
                return self
            if deadline is not None and time.time() > deadline:
                return self
            time.sleep(poll_s)

    def cancel(self, timeout_s: float = 60.0) -> None:
        """Stop the retrain: running trials end, nothing is registered; the job is stopped if it does not end."""
        import ray

        from ray_deploy.cluster import connect
        from ray_deploy.dashboard import DashboardClient, dashboard_url, run_sync

        connect()
        lock = running_lock(self.name)
        if lock is not None and ray.get(lock.who.remote(), timeout=30)[0] == self.retrain_id:
            lock.cancel.remote()
            deadline = time.time() + timeout_s
            while time.time() < deadline:
                if self.status()["state"] in FINAL:
                    return
                time.sleep(0.5)
        if self.status()["state"] in FINAL:
            return
        run_sync(DashboardClient(dashboard_url(Settings.from_env())).stop_job(self.retrain_id))
        section = self.status()
        if section["state"] not in FINAL:
            now = time.time()
            publish(
                self.name,
                {**section, "state": "cancelled", "ended_at": now, "updated_at": now, "message": "cancelled"},
            )

    def _repr_html_(self) -> str:
        from html import escape

        section = self.status()
        return f"<b>retrain {escape(self.retrain_id)}</b>: {escape(section['state'])} — {escape(section['message'])}"


def _recorded(name: str, retrain_id: str) -> dict[str, Any] | None:
    """The section a retrain left in its MLflow parent run; while it runs (and its Monitor lost the live section,
    e.g. after a restart), one made from the run's tags that says so."""
    import json

    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    runs = MlflowClient().search_runs([_experiment()], filter_string=f"tags.`{TAG_ID}` = '{retrain_id}'", max_results=1)
    if not runs:
        return None
    run = runs[0]
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=RESULT_ARTIFACT)
    except (MlflowException, OSError):
        tags = run.data.tags
        started = run.info.start_time / 1000.0
        section = pending_section(
            retrain_id,
            RetrainSpec(),
            tags.get("trigger", "manual"),
            tags.get("ray_deploy.parent_version"),
            run.info.run_id,
            started,
        )
        return {**section, "state": "running", "message": "running; its progress shows again at its next step"}
    return dict(json.loads(Path(path).read_text()))


def _experiment() -> str:
    from ray_deploy.registry import _experiment_id

    return _experiment_id(Settings.from_env())


def _reconciled(name: str, section: dict[str, Any]) -> dict[str, Any]:
    """A section that says running while its Ray Job has ended (killed, stopped) is reported as it really ended."""
    if section["state"] in FINAL:
        return section
    from ray_deploy.dashboard import DashboardClient, dashboard_url, run_sync

    try:
        job = run_sync(DashboardClient(dashboard_url(Settings.from_env())).job(section["retrain_id"]))
    except Exception:  # the dashboard is a second opinion only
        return section
    status = str(job.get("status", ""))
    if status not in ("STOPPED", "FAILED", "SUCCEEDED"):
        return section
    recorded = _recorded(name, section["retrain_id"])
    if recorded is not None and recorded["state"] in FINAL:  # the job ended its retrain; the live view lagged
        return recorded
    state = "cancelled" if status == "STOPPED" else "failed"
    detail = str(job.get("message") or "").strip().splitlines()
    message = f"the Ray Job {section['retrain_id']} ended ({status}) before the retrain finished"
    if detail:
        message += f": {detail[-1]}"
    return {**section, "state": state, "ended_at": section["updated_at"], "message": message}


def last_retrain(name: str) -> RetrainResult | None:
    """The running or last retrain of ``name``: from the status document, else the newest MLflow record."""
    from mlflow import MlflowClient

    from ray_deploy.deployment import Deployment

    section = Deployment(name).status().get("retrain")
    if section is not None:
        return RetrainResult(name, section["retrain_id"])
    runs = MlflowClient().search_runs(
        [_experiment()], filter_string=f"tags.`{TAG_OF}` = '{name}'", order_by=["start_time DESC"], max_results=1
    )
    if not runs or TAG_ID not in runs[0].data.tags:
        return None
    return RetrainResult(name, runs[0].data.tags[TAG_ID])

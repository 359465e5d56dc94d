"""The typed wire documents: every JSON document ray-deploy sends to a widget, the side panel or the CLI.

Each document is a pydantic model, so what is sent is validated where it is built and its shape is written
down once. :func:`json_schema` turns them into one JSON Schema, committed as ``documents.schema.json`` next to
this module (``python -m ray_deploy.documents`` rewrites it); a unit test fails when the committed file is
stale, and another validates the side panel's TypeScript test fixtures against it, so the TypeScript
interfaces (``jupyter_ext/frontend/src/api.ts``) hold exactly what Python sends.

Example:
    >>> doc = StatusDocument.model_validate(monitor_answer)
    >>> doc.traffic.qps if doc.traffic else None
    12.5
    >>> json_schema()["$defs"]["StatusDocument"]["required"][:2]
    ['name', 'state']
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

SCHEMA_PATH = Path(__file__).with_name("documents.schema.json")

# A user-facing option value as it appears in JSON (numbers, flags, names, null).
OptionValue = int | float | str | bool | None


class _Document(BaseModel):
    """Base of the wire documents: no unknown fields, and every field is always sent (required in the schema)."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class Replicas(_Document):
    """Replica counts of a deployment, from Serve's details."""

    current: int = Field(ge=0, description="Replicas in state RUNNING.")
    target: int = Field(ge=0, description="Replicas Serve is scaling to right now.")
    min: int | None = Field(description="Fewest replicas (the autoscaler's lower bound, or the fixed count).")
    max: int | None = Field(description="Most replicas (the autoscaler's upper bound, or the fixed count).")
    states: dict[str, int] = Field(description="Replica count per Serve replica state, e.g. {'RUNNING': 2}.")


class Traffic(_Document):
    """Live traffic numbers of a deployment, as its Monitor counted them."""

    qps: float = Field(ge=0, description="Requests per second over the last qps window (10 s).")
    rows_per_s: float = Field(ge=0, description="Predicted rows per second over the same window.")
    p50_ms: float | None = Field(description="Median latency of successful requests in the window, ms.")
    p99_ms: float | None = Field(description="99th percentile latency of successful requests in the window, ms.")
    requests: int = Field(ge=0, description="Requests answered since the Monitor started.")
    errors: int = Field(ge=0, description="Requests answered with HTTP status >= 400 since the Monitor started.")
    errors_by_status: dict[str, int] = Field(description="Error count per HTTP status code (as a string).")
    window_s: float = Field(gt=0, description="Seconds of requests the latency percentiles cover.")
    dropped_samples: int = Field(
        ge=0, description="Request samples the replicas could not hand to the Monitor (so not counted)."
    )


class HistoryPoint(_Document):
    """One finished time bucket (10 s) of a deployment's traffic history."""

    t: float = Field(description="Start of the bucket, seconds since the epoch.")
    qps: float = Field(ge=0, description="Requests per second in the bucket (0 when it had none).")
    p50_ms: float | None = Field(description="Median latency of the bucket's successful requests, ms.")
    p99_ms: float | None = Field(description="99th percentile latency of the bucket's successful requests, ms.")
    errors: int = Field(ge=0, description="Requests in the bucket answered with HTTP status >= 400.")


class Links(_Document):
    """Where a person looks at a deployment."""

    endpoint: str = Field(description="Base URL of the deployment's routes, e.g. http://127.0.0.1:8000/v2/models/iris.")
    dashboard: str | None = Field(description="The Ray dashboard's page of the Serve application, if known.")
    mlflow: str | None = Field(description="The MLflow UI page of the serving version (only for an MLflow server).")
    model_uri: str | None = Field(description="models:/<name>/<version>, loadable with mlflow.pyfunc.load_model.")


AlarmLevel = Literal["ok", "warning", "alarm"]
DriftState = Literal["ok", "warning", "alarm", "collecting", "no_reference"]


class FeatureDrift(_Document):
    """One feature's drift test in one window (the prediction is the feature ``prediction``)."""

    feature: str = Field(description="Input column name, or 'prediction' for the model's output.")
    kind: Literal["numeric", "categorical"] = Field(description="How the feature was tested.")
    test: str = Field(description="The test: 'ks' (two-sample Kolmogorov-Smirnov) or 'chi2' (chi-square).")
    statistic: float = Field(description="The test statistic (KS D, or chi-square).")
    p_value: float | None = Field(description="The test's p-value.")
    adjusted_p_value: float | None = Field(description="Benjamini-Hochberg adjusted p-value across the window's tests.")
    effect_size: float = Field(
        description="KS D for numeric features, Jensen-Shannon distance for categorical ones (0 = same)."
    )
    psi: float | None = Field(description="Population stability index on the reference's bins.")
    wasserstein: float | None = Field(description="Wasserstein distance divided by the reference's std (numeric).")
    drifted: bool = Field(description="Significant after correction and above the effect-size threshold.")


class DriftTrendPoint(_Document):
    """One closed window in the drift trend."""

    t: float = Field(description="When the window closed, seconds since the epoch.")
    rows: int = Field(ge=0, description="Rows in the window.")
    drifted_features: list[str] = Field(description="Features that drifted in the window.")
    share_drifted: float = Field(ge=0, le=1, description="Share of tested features that drifted.")
    auc: float | None = Field(description="Domain-classifier AUC (reference vs window), 0.5 = indistinguishable.")
    drifted: bool = Field(description="The window's dataset verdict.")
    level: AlarmLevel = Field(description="The alarm level after this window.")


class AlarmEvent(_Document):
    """A change of the drift alarm level, with its window and evidence."""

    seq: int = Field(ge=0, description="Sequence number of the event in this Monitor (increasing).")
    t: float = Field(description="When the level changed, seconds since the epoch.")
    level: AlarmLevel = Field(description="The new level.")
    previous: AlarmLevel = Field(description="The level before.")
    version: str | None = Field(description="The version serving in the window.")
    window_start: float = Field(description="Start of the window that decided it, seconds since the epoch.")
    window_end: float = Field(description="End of that window, seconds since the epoch.")
    rows: int = Field(ge=0, description="Rows in that window.")
    drifted_features: list[str] = Field(description="The features that drifted in that window.")
    auc: float | None = Field(description="The window's domain-classifier AUC.")


class DriftSection(_Document):
    """Drift of the serving version against its reference, from the last closed window."""

    state: DriftState = Field(
        description="ok/warning/alarm; 'collecting' before the first window closes; "
        "'no_reference' without reference data."
    )
    message: str = Field(description="One line for a person: what drifted, or why there is no verdict yet.")
    version: str | None = Field(description="The version whose reference is used.")
    reference_rows: int = Field(ge=0, description="Rows of reference data (0: none).")
    window_rows: int = Field(ge=0, description="Rows collected in the open window so far.")
    windows: int = Field(ge=0, description="Windows closed since the Monitor started.")
    last_window_end: float | None = Field(description="When the last window closed, or null.")
    drifted: bool | None = Field(description="The last window's dataset verdict, or null before one closed.")
    drifted_features: list[str] = Field(description="Features drifted in the last window.")
    auc: float | None = Field(description="The last window's domain-classifier AUC.")
    features: list[FeatureDrift] = Field(description="Per-feature tests of the last window.")
    trend: list[DriftTrendPoint] = Field(description="The last closed windows, oldest first (at most 50).")
    last_alarm: AlarmEvent | None = Field(description="The latest alarm level change, or null.")


class FieldQuality(_Document):
    """Data-quality counters of one input field."""

    missing: int = Field(ge=0, description="Null/NaN values.")
    type_violations: int = Field(ge=0, description="Values of the wrong type (requests rejected for this field).")
    out_of_range: int = Field(ge=0, description="Numeric values outside the reference's [min, max].")
    unseen_categories: int = Field(ge=0, description="Categorical values the reference never had.")


class QualitySection(_Document):
    """Data quality of the traffic: the last closed window and totals since the Monitor started."""

    rows: int = Field(ge=0, description="Rows counted in the last closed window.")
    rejected_requests: int = Field(ge=0, description="Requests rejected by validation (422) since the Monitor started.")
    rejected_by_field: dict[str, int] = Field(description="Rejected requests per offending field, since start.")
    fields: dict[str, FieldQuality] = Field(description="Counters per input field, last closed window.")
    totals: dict[str, FieldQuality] = Field(description="Counters per input field since the Monitor started.")


MetricValue = float | None


class PerformanceSection(_Document):
    """Model quality from delayed labels (``feedback``) joined to captured predictions."""

    task: Literal["classification", "regression"] | None = Field(description="What the metrics measure, once known.")
    labelled: int = Field(ge=0, description="Predictions with a label in the window.")
    window_s: float = Field(gt=0, description="Seconds of labelled predictions the metrics cover.")
    metrics: dict[str, MetricValue] = Field(
        description="Metrics of the serving version: accuracy, precision, recall, f1, auc or mae, rmse, r2."
    )
    by_version: dict[str, dict[str, MetricValue]] = Field(description="The same metrics per version.")
    unknown_ids: int = Field(ge=0, description="Feedback request ids that matched no captured prediction, since start.")


RolloutMode = Literal["canary", "shadow", "ab"]
RolloutState = Literal["running", "paused", "awaiting_approval", "promoted", "rolled_back", "aborted", "finished"]


class GateResult(_Document):
    """One gate's verdict at a rollout step, with its evidence."""

    gate: str = Field(description="error_rate, p99_latency, prediction_shift, accuracy or fairness.")
    status: Literal["pass", "fail", "waiting"] = Field(description="waiting: not enough data yet.")
    champion: float | None = Field(description="The champion's value on the same window.")
    challenger: float | None = Field(description="The challenger's value.")
    threshold: float | None = Field(description="The limit it is compared with.")
    message: str = Field(description="One line for a person.")


class RolloutStep(_Document):
    """A step of a rollout as it happened."""

    index: int = Field(ge=0, description="Step number, from 0.")
    share: float = Field(ge=0, le=1, description="Challenger traffic share during the step.")
    started_at: float = Field(description="When the step started, seconds since the epoch.")
    ended_at: float | None = Field(description="When it ended, or null while it runs.")
    decision: Literal["running", "advance", "promote", "rollback", "paused", "aborted", "finished"] = Field(
        description="What the step's gates decided (running while it lasts)."
    )
    gates: list[GateResult] = Field(description="The gates' verdicts at the end of the step (or so far).")


class VersionTraffic(_Document):
    """One version's traffic during the current rollout step."""

    requests: int = Field(ge=0, description="Requests answered.")
    errors: int = Field(ge=0, description="Requests answered with HTTP status >= 500.")
    error_rate: float | None = Field(description="errors / requests, or null without requests.")
    p50_ms: float | None = Field(description="Median latency, ms.")
    p99_ms: float | None = Field(description="99th percentile latency, ms.")


class RolloutSection(_Document):
    """The deployment's current or last rollout (canary, shadow or A/B test)."""

    rollout_id: str = Field(description="Id of the rollout.")
    mode: RolloutMode = Field(description="canary, shadow or ab.")
    state: RolloutState = Field(description="Where it is; promoted, rolled_back, aborted and finished are final.")
    champion: str = Field(description="The champion version.")
    challenger: str = Field(description="The challenger version.")
    share: float = Field(ge=0, le=1, description="The challenger's current share (shadow: the mirrored fraction).")
    step: int = Field(ge=0, description="Current step index.")
    steps: list[float] = Field(description="The planned shares.")
    started_at: float = Field(description="When the rollout started, seconds since the epoch.")
    updated_at: float = Field(description="When the controller last decided, seconds since the epoch.")
    message: str = Field(description="One line for a person: progress, or why it ended.")
    history: list[RolloutStep] = Field(description="Every step so far, oldest first.")
    traffic: dict[str, VersionTraffic] = Field(description="Per version traffic in the current step.")
    report: dict[str, MetricValue] = Field(
        description="Shadow: agreement, latency delta; A/B: metric per arm, difference, CI, p-value, samples needed."
    )


RetrainState = Literal["pending", "running", "succeeded", "failed", "cancelled"]
RetrainThen = Literal["register", "canary", "shadow", "deploy"]
RetrainTrigger = Literal["manual", "drift", "schedule", "performance"]
ConfigValue = int | float | str | bool | None


class RetrainTrial(_Document):
    """One Ray Tune trial of a retrain, as it runs."""

    trial_id: str = Field(description="Tune's trial id.")
    status: Literal["PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"] = Field(description="Tune's trial status.")
    config: dict[str, ConfigValue] = Field(description="The trial's hyperparameters.")
    metric: float | None = Field(description="The trial's last reported value of the retrain metric.")
    iterations: int = Field(ge=0, description="Results reported so far (epochs or boosting rounds).")
    stopped_early: bool = Field(description="Whether the scheduler (ASHA) stopped it before its last iteration.")
    error: str | None = Field(description="Why it failed (the exception's last line), or null.")


class CurvePoint(_Document):
    """The best metric so far at a moment of the retrain."""

    t: float = Field(ge=0, description="Seconds since the retrain started.")
    value: float = Field(description="Best value of the metric so far.")


class GateRow(_Document):
    """Champion and challenger scored on one data set by the evaluation gate."""

    dataset: Literal["held_out", "recent"] = Field(
        description="held_out: reference and caller rows no trial trained on; recent: the newest labelled captured "
        "rows."
    )
    rows: int = Field(ge=0, description="Rows scored.")
    champion: float | None = Field(description="The champion's metric, or null when it could not be scored.")
    challenger: float | None = Field(description="The new version's metric.")
    delta: float | None = Field(description="challenger - champion, signed so that positive is better.")


class RetrainGate(_Document):
    """The evaluation gate: is the new version better than the champion on data it did not train on?"""

    passed: bool = Field(description="Whether the new version may serve.")
    metric: str = Field(description="The metric compared.")
    min_improvement: float = Field(
        description="How much better (in the metric's units) the new version must be on recent (else held-out) rows."
    )
    max_regression: float = Field(description="How much worse it may be on held-out rows when recent rows decide.")
    rows: list[GateRow] = Field(description="One comparison per data set.")
    reason: str = Field(description="One line for a person: why it passed or failed.")


class RetrainData(_Document):
    """Exactly what a retrain trained and was evaluated on (recorded with the new version)."""

    rows: int = Field(ge=0, description="Labelled rows in all.")
    train_rows: int = Field(ge=0, description="Rows the trials trained on.")
    valid_rows: int = Field(ge=0, description="Rows the trials were scored on (the metric Tune optimizes).")
    test_rows: int = Field(ge=0, description="Held-out rows for the evaluation gate.")
    from_reference: int = Field(ge=0, description="Rows from the deployment's labelled reference data.")
    from_captured: int = Field(ge=0, description="Rows from captured traffic with feedback labels.")
    from_user: int = Field(ge=0, description="Rows passed as data= by the caller.")
    content_hash: str = Field(description="SHA-256 of the rows and labels, in order.")
    since: float | None = Field(description="Oldest captured row used, seconds since the epoch, or null.")
    until: float | None = Field(description="Newest captured row used, or null.")


class RetrainSection(_Document):
    """The deployment's running or last retrain (Ray Tune in a Ray Job)."""

    retrain_id: str = Field(description="Id of the retrain; also its Ray Job's submission id.")
    state: RetrainState = Field(description="pending, running; succeeded, failed and cancelled are final.")
    trigger: RetrainTrigger = Field(description="What started it.")
    started_at: float = Field(description="When it started, seconds since the epoch.")
    updated_at: float = Field(description="When this section was last written.")
    ended_at: float | None = Field(description="When it ended, or null while it runs.")
    time_budget_s: float | None = Field(description="Tune's time budget, or null without one.")
    metric: str = Field(description="What Tune optimizes, e.g. accuracy or rmse.")
    mode: Literal["max", "min"] = Field(description="Whether a larger metric is better.")
    scheduler: Literal["asha", "fifo"] = Field(description="Tune's trial scheduler.")
    num_samples: int = Field(ge=1, description="Trials planned.")
    parent_version: str | None = Field(description="The version that served when the retrain started.")
    trials: list[RetrainTrial] = Field(description="Every trial so far.")
    best_curve: list[CurvePoint] = Field(description="Best metric so far over time, oldest first.")
    best_trial: str | None = Field(description="Id of the best trial so far, or null.")
    data: RetrainData | None = Field(description="What it trains on, once gathered.")
    version: str | None = Field(description="The registered new version (alias challenger), or null.")
    gate: RetrainGate | None = Field(description="The evaluation gate's verdict, or null before it ran.")
    then: RetrainThen = Field(description="What happens to a new version that passes the gate.")
    mlflow_run_id: str | None = Field(description="The MLflow parent run (one child run per trial).")
    message: str = Field(description="One line for a person: progress, or how it ended.")


class RetrainEvent(_Document):
    """One decision of an auto-retrain policy."""

    t: float = Field(description="When, seconds since the epoch.")
    trigger: RetrainTrigger = Field(description="What fired.")
    action: Literal["started", "skipped", "finished"] = Field(
        description="started or skipped a retrain on a trigger, or a retrain it started finished."
    )
    retrain_id: str | None = Field(description="The retrain it started, or null.")
    reason: str = Field(description="One line: why it started or was skipped (cooldown, one running, ...).")


class AutoRetrainSection(_Document):
    """The deployment's auto-retrain policy, running in the cluster."""

    on: Literal["drift", "schedule", "performance"] = Field(description="What triggers a retrain.")
    then: RetrainThen = Field(description="What happens to a new version that passes the gate.")
    cooldown_s: float = Field(ge=0, description="Least seconds between two retrains it starts.")
    every_s: float | None = Field(description="The schedule's period (on=schedule), or null.")
    min_metric: float | None = Field(description="The performance floor (on=performance), or null.")
    last_started_at: float | None = Field(description="When it last started a retrain, or null.")
    events: list[RetrainEvent] = Field(description="Its recent decisions, oldest first (at most 50).")


class StatusDocument(_Document):
    """The one status document of a deployment, built in the cluster; every view renders it."""

    name: str = Field(description="Deployment name (also the registered model name).")
    state: str = Field(description="Serve application state: RUNNING, DEPLOYING, DEPLOY_FAILED, UNHEALTHY, ...")
    message: str = Field(description="Serve's message about the application ('' when all is well).")
    version: str | None = Field(description="Registry version that serves, or null before one does.")
    alias: str | None = Field(description="The registry alias naming the serving version (e.g. champion), or null.")
    aliases: dict[str, str] = Field(description="Every registry alias of the model and the version it names.")
    model_kind: str | None = Field(description="Model flavour: sklearn, torch, pyfunc, ...")
    url: str = Field(description="Base URL of the deployment's routes.")
    replicas: Replicas = Field(description="Replica counts.")
    traffic: Traffic | None = Field(description="Live traffic numbers, or null when the Monitor did not answer.")
    options: dict[str, OptionValue] = Field(description="The deployment options it runs with (DeployOptions).")
    links: Links = Field(description="Where to look at the deployment.")
    deployed_at: float | None = Field(description="When the application was last deployed, seconds since the epoch.")
    updated_at: float = Field(description="When this document was built, seconds since the epoch.")
    history: list[HistoryPoint] = Field(description="Traffic history, oldest first (10 s buckets, 30 minutes).")
    drift: DriftSection | None = Field(None, description="Drift against the reference, or null without capture.")
    quality: QualitySection | None = Field(None, description="Data-quality counters, or null without capture.")
    performance: PerformanceSection | None = Field(None, description="Metrics from labels, or null before any.")
    rollout: RolloutSection | None = Field(None, description="The current or last rollout, or null if none.")
    retrain: RetrainSection | None = Field(None, description="The running or last retrain, or null if none.")
    auto_retrain: AutoRetrainSection | None = Field(None, description="The auto-retrain policy, or null if none.")


class VersionDocument(_Document):
    """One registered version of a deployment's model, as the side panel lists it."""

    version: str = Field(description="Registry version number.")
    aliases: list[str] = Field(description="Aliases naming this version, sorted.")
    created_at: float | None = Field(description="When the version was registered, seconds since the epoch.")
    run_id: str | None = Field(description="MLflow run that logged the model, if any.")


class DeploymentDetails(StatusDocument):
    """``GET deployments/<name>`` of the server extension: the status document plus the registry versions."""

    versions: list[VersionDocument] = Field(description="Every registered version, oldest first.")


class DeploymentList(_Document):
    """``GET deployments`` of the server extension: the status document of every deployment."""

    deployments: list[StatusDocument] = Field(description="One status document per deployment, sorted by name.")


class ClusterDocument(_Document):
    """``GET cluster`` of the server extension: whether a Ray cluster answers, and what it offers."""

    connected: bool = Field(description="Whether the Ray dashboard answered.")
    address: str | None = Field(description="Ray address of the cluster (host:port), if known.")
    dashboard_url: str = Field(description="The Ray dashboard URL the extension talks to.")
    endpoint: str = Field(description="Base URL of the deployments' HTTP API.")
    nodes: int = Field(ge=0, description="Alive nodes.")
    cpus: float = Field(ge=0, description="CPUs of the alive nodes.")
    gpus: float = Field(ge=0, description="GPUs of the alive nodes.")
    local: bool = Field(description="Whether this is the local head ray-deploy starts (so it can be started here).")
    message: str = Field(description="One line for a person: the cluster's size, or what is wrong and what to do.")


ActionKind = Literal["scale", "delete", "promote", "rollback"]
ActionStatus = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED"]


class ActionDocument(_Document):
    """A long-running change (a Ray Job running the ``ray-deploy`` CLI): 202 answers and ``GET actions/<id>``."""

    action_id: str = Field(description="Id of the action (its Ray Job submission id).")
    action: ActionKind = Field(description="What the action does.")
    name: str = Field(description="The deployment it acts on.")
    status: ActionStatus = Field(description="Where it is; SUCCEEDED and FAILED are final.")
    message: str = Field(description="One line for a person: progress, the CLI's result, or why it failed.")


class ErrorDocument(_Document):
    """The body of every error answer."""

    error: str = Field(description="What is wrong and what to do about it.")


class StatusUnavailable(_Document):
    """A model-list entry's status when the deployment's Monitor did not answer."""

    name: str = Field(description="Deployment name.")
    state: str = Field(description="Serve application state.")
    error: str = Field(description="Why the status document is missing.")


class ModelRow(_Document):
    """One deployment in ``GET /v2/models`` of the data plane."""

    # ``status`` is sent only with ``?stats=1``, so the schema must not call it required
    model_config = ConfigDict(json_schema_serialization_defaults_required=False)

    name: str = Field(description="Deployment name.")
    state: str = Field(description="Serve application state.")
    url: str = Field(description="Path of the deployment's routes, e.g. /v2/models/iris.")
    status: StatusDocument | StatusUnavailable | None = Field(
        None, description="With ?stats=1: the status document, or why it is unavailable."
    )


class ModelList(_Document):
    """``GET /v2/models`` of the data plane (``?stats=1``: with every status document, in one call)."""

    models: list[ModelRow] = Field(description="Every deployment, sorted by name.")


class AuditEvent(_Document):
    """One entry of the audit log (``ray_deploy.audit``): a change, who made it, and the hash chain link."""

    time: float = Field(description="When it happened, seconds since the epoch.")
    time_iso: str = Field(description="The same time as an ISO 8601 string (UTC).")
    who: str = Field(
        description="Who acted: user:<os user>, jupyter:<jupyter user>, key:<api key id>, or for automatic actions "
        "controller:rollout / controller:auto-retrain."
    )
    action: str = Field(
        description="What changed: deploy, scale, delete, canary_start, shadow_start, abtest_start, promote, "
        "rollback, pause, resume, abort, approve, retrain_started, retrain_finished, auto_retrain_enable, "
        "auto_retrain_disable, auto_retrain_trigger, key_create, key_revoke, auth_change, ..."
    )
    deployment: str | None = Field(description="The deployment it changed, or null (e.g. a cluster-wide key).")
    before: dict[str, Any] = Field(description="What was there before, e.g. {'version': '3', 'replicas': 1}.")
    after: dict[str, Any] = Field(description="What is there after, e.g. {'version': '4', 'replicas': 1}.")
    outcome: str = Field(description="ok, failed: <message>, rolled_back, awaiting_approval, ...")
    evidence: dict[str, Any] = Field(
        description="For automatic actions, why: e.g. the failed gate and its numbers ({} for manual ones)."
    )
    prev_hash: str = Field(description="The previous entry's hash (64 zeros for the first entry).")
    hash: str = Field(description="SHA-256 of the canonical JSON of this entry without 'hash' (prev_hash included).")


class AuditVerificationDocument(_Document):
    """Whether the audit log's hash chain is intact (``ray_deploy.verify_audit``)."""

    ok: bool = Field(description="Every entry's hash matches its content and links to the entry before it.")
    count: int = Field(ge=0, description="Entries in the log.")
    broken_at: int | None = Field(description="Index (from 0) of the first entry that does not verify, or null.")
    reason: str = Field(description="Why it does not verify ('' when it does).")


class AuditTrail(_Document):
    """``GET deployments/<name>/audit`` of the server extension: a deployment's audit entries and the chain check."""

    deployment: str | None = Field(description="The deployment, or null for every deployment.")
    entries: list[AuditEvent] = Field(description="Its audit entries, oldest first (the newest 200 at most).")
    verification: AuditVerificationDocument = Field(description="The whole log's hash-chain check.")


DOCUMENTS: tuple[type[BaseModel], ...] = (
    StatusDocument,
    DeploymentList,
    DeploymentDetails,
    VersionDocument,
    ClusterDocument,
    ActionDocument,
    ErrorDocument,
    ModelList,
    AuditEvent,
    AuditTrail,
)


def json_schema() -> dict[str, Any]:
    """One JSON Schema (draft 2020-12) of every wire document, each under ``$defs/<ClassName>``.

    Example:
        >>> sorted(json_schema()["$defs"])[:3]
        ['ActionDocument', 'ClusterDocument', 'DeploymentDetails']
    """
    _, schema = models_json_schema([(model, "serialization") for model in DOCUMENTS], title="ray-deploy documents")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "Wire documents of ray-deploy (generated by `python -m ray_deploy.documents`; do not edit).",
        **schema,
    }


def schema_text() -> str:
    """The schema as committed: indented JSON with sorted keys and a final newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    """Write the schema to ``path`` (default: the committed ``documents.schema.json``).

    Example:
        >>> write_schema()
        PosixPath('.../ray_deploy/documents.schema.json')
    """
    path.write_text(schema_text())
    return path


if __name__ == "__main__":
    print(f"wrote {write_schema(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_PATH)}")

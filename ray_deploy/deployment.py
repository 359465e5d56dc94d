"""The Python API: deploy a model, re-attach to a deployment, use it, scale it, delete it.

Example:
    >>> dep = deploy(clf, name="iris", sample_input=X[:5])
    >>> dep.predict(X[:2])
    array([0, 0])
    >>> get("iris").status()["replicas"]["current"]
    1
"""

from __future__ import annotations

import html
import re
import time
from typing import TYPE_CHECKING, Any

from ray_deploy import audit
from ray_deploy.cluster import cluster_info, connect
from ray_deploy.config import (
    CaptureSpec,
    DeployOptions,
    DriftSpec,
    GateSpec,
    RolloutSpec,
    Settings,
    parse_options,
    validate_name,
)
from ray_deploy.errors import (
    ConfigError,
    DeploymentFailed,
    InsufficientResources,
    ModelNotFound,
    NotReady,
    RayDeployError,
)
from ray_deploy.monitoring import resolve_monitoring
from ray_deploy.package import check_predict_method, model_kind
from ray_deploy.reference import choose_reference, prepare_reference, save_reference
from ray_deploy.reference import reference_labels as reference_labels_of

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime, timedelta

    from ray_deploy.dataplane.apps import Monitoring
    from ray_deploy.drift_report import DriftReport
    from ray_deploy.explanation import Explanation
    from ray_deploy.fairness import FairnessReport
    from ray_deploy.monitoring import DriftWatcher
    from ray_deploy.retraining import RetrainResult
    from ray_deploy.rollouts import Rollout
from ray_deploy.serve_api import run_app, serve_details
from ray_deploy.status import MODEL_ROUTE, model_apps, state_of

_STAGES = ("registering", "starting replicas", "healthy")
_STATUS_TIMEOUT_S = 15.0


class Deployment:
    """A deployment on the cluster, found by name; holds no state of its own beyond the name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Deployment(name={self.name!r})"

    @property
    def url(self) -> str:
        """The HTTP base URL, e.g. ``http://127.0.0.1:8000/v2/models/iris``."""
        return f"{Settings.from_env().endpoint}{MODEL_ROUTE}{self.name}"

    @property
    def version(self) -> str | None:
        """The registered model version that serves (the ``champion`` alias)."""
        version = self._user_config().get("version")
        return str(version) if version is not None else None

    @property
    def options(self) -> DeployOptions:
        """The options it was deployed (or last scaled) with."""
        return DeployOptions(**self._user_config().get("options", {}))

    def predict(self, data: Any, version: str | None = None) -> Any:
        """Predict through the Serve handle (no HTTP); DataFrame, ndarray, tensor or list in.

        Example:
            >>> get("iris").predict([[5.1, 3.5, 1.4, 0.2]])
            array([0])
        """
        return _unwrap(lambda: _result(self._handle().predict.remote(data, version)))

    def status(self) -> dict[str, Any]:
        """The status document: state, version, replicas (current/target/min/max), QPS, p50/p99, errors."""
        from ray import serve

        connect()
        _app(self.name)
        # straight to the Monitor: a status poll must not count as load on the model's replicas
        monitor = serve.get_deployment_handle("Monitor", app_name=self.name)
        try:
            return dict(_unwrap(lambda: _result(monitor.status.remote(), timeout_s=_STATUS_TIMEOUT_S)))
        except TimeoutError:
            _app(self.name)  # deleted meanwhile: ModelNotFound says so
            raise NotReady(
                f"the status of {self.name!r} did not arrive within {_STATUS_TIMEOUT_S:g}s; "
                "its Monitor may be restarting, try again"
            ) from None

    def scale(
        self,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        **options: Any,
    ) -> Deployment:
        """Change replica counts (or other options) in place, keeping the version that serves.

        Example:
            >>> get("iris").scale(min_replicas=0, max_replicas=3)
        """
        changes = {
            k: v for k, v in {"min_replicas": min_replicas, "max_replicas": max_replicas}.items() if v is not None
        }
        old = self.options
        new = parse_options(old, **changes, **options)
        version = self.version
        if version is None:
            raise DeploymentFailed(f"deployment {self.name!r} has no serving version to scale; redeploy it")
        config = self._user_config()
        changed = sorted({*changes, *options})
        before = {"version": version, **{k: getattr(old, k) for k in changed}}
        after = {"version": version, **{k: getattr(new, k) for k in changed}}
        try:
            _roll_out(self.name, version, config.get("kind", "pyfunc"), new, monitoring=_monitoring_of(config))
        except Exception as exc:
            audit.record("scale", deployment=self.name, before=before, after=after, outcome=f"failed: {exc}")
            raise
        audit.record("scale", deployment=self.name, before=before, after=after)
        return self

    def delete(self) -> None:
        """Remove the deployment from the cluster; its versions stay in the MLflow registry."""
        delete(self.name)

    def explain(
        self, data: Any, explainer: str = "auto", background: Any = None, version: str | None = None
    ) -> Explanation:
        """SHAP values of ``data`` computed on the cluster by the deployment's explainer (off the predict path).

        ``explainer``: ``auto`` (tree, linear, deep for torch, else permutation), or a name to force one.
        Large inputs are explained in parallel chunks as Ray tasks.

        Example:
            >>> expl = get("iris").explain(X[:5])
            >>> expl.plot("waterfall", row=0)
        """
        from ray import serve

        from ray_deploy.explanation import Explanation

        connect()
        _app(self.name)
        handle = serve.get_deployment_handle("Explainer", app_name=self.name)
        timeout_s = self.options.explain_timeout_s
        doc = _unwrap(lambda: _result(handle.explain.remote(data, version, explainer, background), timeout_s))
        return Explanation.from_json(doc)

    def fairness_report(
        self, data: Any, labels: Any, sensitive: list[str], positive_label: Any = None, record: bool = True
    ) -> FairnessReport:
        """Per-group selection rate, accuracy, TPR/FPR and the parity metrics of this deployment's predictions.

        ``data`` holds the model's inputs and the ``sensitive`` columns (those that are not model inputs are
        dropped before predicting). The report is recorded with the serving version in MLflow.

        Example:
            >>> report = get("credit").fairness_report(X_test, y_test, sensitive=["sex"])
            >>> report.passes_four_fifths
            True
        """
        from ray_deploy.fairness import fairness_metrics, record_report
        from ray_deploy.mitigation import predicted_labels, split_sensitive

        features, groups = split_sensitive(data, sensitive, self._input_names())
        report = fairness_metrics(labels, predicted_labels(self.predict(features)), groups, positive_label)
        version = self.version
        if record and version is not None:
            record_report(self.name, version, report)
        return report

    def captured(
        self,
        since: float | datetime | timedelta | str | None = None,
        until: float | datetime | timedelta | str | None = None,
        version: str | None = None,
        limit: int | None = None,
    ) -> Any:
        """Captured requests as a DataFrame: request_id, row, t, version, latency_ms, status, inputs, prediction, label.

        ``since``/``until``: seconds since the epoch, a datetime, an ISO string, or a timedelta ago.

        Example:
            >>> get("iris").captured(since=timedelta(hours=1), version="2").shape
            (120, 11)
        """
        from ray_deploy.monitoring import captured

        return captured(self.name, since, until, version, limit)

    def feedback(self, request_ids: list[str], labels: list[Any]) -> dict[str, Any]:
        """Join delayed ground truth to captured predictions: one label per request id (a list per row for a
        request of several rows). Returns how many joined and the ids that matched no captured request.

        Example:
            >>> get("iris").feedback(["4f1c...", "9a2e..."], [0, 2])
            {'joined': 2, 'unknown_ids': []}
        """
        from ray_deploy.monitoring import feedback

        return feedback(self.name, request_ids, labels)

    def erase(self, request_ids: list[str]) -> int:
        """Delete every captured row and label of these requests (e.g. a GDPR erasure); returns rows removed.

        Example:
            >>> get("iris").erase(["4f1c..."])
            1
        """
        from ray_deploy.monitoring import erase

        return erase(self.name, request_ids)

    def drift_report(self, window: int | None = None) -> DriftReport:
        """Drift against the reference: the last closed window, or the last ``window`` captured rows.

        Example:
            >>> report = get("iris").drift_report()
            >>> report.table[report.table.drifted]
        """
        from ray_deploy.monitoring import drift_report

        return drift_report(self.name, window)

    def on_drift(self, callback: Callable[[dict[str, Any]], Any], poll_s: float = 5.0) -> DriftWatcher:
        """Call ``callback(event)`` whenever the drift alarm level changes (polled while this kernel runs).

        Example:
            >>> watcher = get("iris").on_drift(lambda e: print(e["level"], e["drifted_features"]))
        """
        from ray_deploy.monitoring import DriftWatcher

        return DriftWatcher(self.name, callback, poll_s)

    # ---- rollouts ----------------------------------------------------------------------------------------

    def canary(
        self,
        model_or_version: Any,
        steps: tuple[float, ...] = (0.05, 0.25, 0.5, 1.0),
        step_s: float = 60.0,
        gates: GateSpec | dict[str, Any] | None = None,
        sticky_header: str | None = None,
        sample_input: Any = None,
        requires_approval: bool = False,
    ) -> Rollout:
        """Shift traffic to a challenger step by step; promote when every step's gates pass, roll back when one
        fails (error rate, p99 latency, prediction shift vs the champion, accuracy once labels arrive).

        ``model_or_version``: a model (registered as a new version) or a registered version such as ``"3"``.
        The rollout runs in the cluster; closing the notebook does not stop it.

        Example:
            >>> rollout = get("churn").canary(new_clf, steps=(0.1, 0.5, 1.0), step_s=30)
            >>> rollout.status()["message"]
            'step 1/3: 10% to v4, 25 s left; gates pass so far'
        """
        from ray_deploy.rollouts import start

        spec = _rollout_spec(steps=tuple(steps), step_s=step_s, gates=gates or {}, sticky_header=sticky_header)
        return start(
            self.name,
            "canary",
            model_or_version,
            spec=spec,
            sample_input=sample_input,
            requires_approval=requires_approval,
        )

    def shadow(self, model_or_version: Any, fraction: float = 1.0, sample_input: Any = None) -> Rollout:
        """Mirror a share of requests to a challenger, fire-and-forget: users never see or wait for its answers;
        ``rollout.report()`` gives the agreement rate, latency delta and output shift.

        Example:
            >>> get("churn").shadow("4").report()["agreement"]
            0.97
        """
        from ray_deploy.rollouts import start

        return start(self.name, "shadow", model_or_version, share=fraction, sample_input=sample_input)

    def ab_test(
        self, model_or_version: Any, split: float = 0.5, metric: str = "accuracy", sample_input: Any = None
    ) -> Rollout:
        """Split traffic between champion and challenger and compare ``metric`` (``accuracy`` from labels, or
        ``error_rate``, ``latency_ms``) with a significance test, confidence interval and samples still needed.

        Example:
            >>> get("churn").ab_test("4", split=0.5).report()["p_value"]
            0.003
        """
        from ray_deploy.rollouts import start

        if metric not in ("accuracy", "error_rate", "latency_ms"):
            raise ConfigError(f"metric must be 'accuracy', 'error_rate' or 'latency_ms', got {metric!r}")
        return start(self.name, "ab", model_or_version, share=split, metric=metric, sample_input=sample_input)

    @property
    def rollout(self) -> Rollout | None:
        """The running (or last) rollout, re-attached from the cluster; None if there was none."""
        from ray_deploy.rollouts import Rollout

        return Rollout(self.name) if self.status().get("rollout") is not None else None

    def promote(self) -> bool:
        """Make the challenger the champion (atomically, with no failed requests).

        With ``require_approval`` (a deploy option) the promotion waits instead, at ``awaiting_approval``, until a
        second person calls :meth:`approve`; then this returns False.

        Example:
            >>> get("churn").promote()
            True
        """
        from ray_deploy.rollouts import promote

        return promote(self.name)

    def approve(self, version: str | int) -> None:
        """Approve the promotion of challenger ``version`` of a deployment deployed with ``require_approval=True``.

        The approver is ``ray_deploy.audit.current_identity()`` (the OS user, the Jupyter user, or what
        ``audit.acting_as`` sets) and must be a second person: not who started the rollout or asked to promote it
        (that is refused with :class:`ray_deploy.rollout.ApprovalRefused`). The approval is in the audit log.

        Example:
            >>> get("churn").approve("4")   # as another user than the one who started the canary
        """
        from ray_deploy.rollouts import approve

        approve(self.name, str(version))

    def rollback(self, to_version: str | None = None) -> None:
        """End the running rollout, or serve ``to_version`` (default: the version before the current one).

        Example:
            >>> get("churn").rollback(to_version="2")
        """
        from ray_deploy.rollouts import rollback

        rollback(self.name, None if to_version is None else str(to_version))

    def versions(self) -> Any:
        """Every registered version: aliases, when and by whom it was deployed, what serves, its metrics.

        Example:
            >>> get("churn").versions()[["version", "aliases", "serving"]]
        """
        from ray_deploy.registry import versions_frame

        return versions_frame(self.name, self.version)

    # ---- retraining ---------------------------------------------------------------------------------------

    def retrain(self, **options: Any) -> RetrainResult:
        """Retrain this deployment with Ray Tune in the cluster; see :func:`ray_deploy.retrain` for the options.

        Example:
            >>> get("churn").retrain(num_samples=4, then="canary").gate["passed"]
            True
        """
        from ray_deploy.retraining import retrain

        return retrain(self.name, **options)

    @property
    def last_retrain(self) -> RetrainResult | None:
        """The running or last retrain, re-attached from the cluster or MLflow; None if there was none."""
        from ray_deploy.retraining import last_retrain

        return last_retrain(self.name)

    def auto_retrain(
        self,
        on: str | None = "drift",
        *,
        cooldown_s: float = 3600.0,
        then: str = "canary",
        every_s: float | None = None,
        min_metric: float | None = None,
        **retrain_options: Any,
    ) -> None:
        """Retrain automatically, from the cluster: on a drift alarm, on a schedule (``every_s``) or when the
        labelled metric falls below ``min_metric``; at most once per ``cooldown_s``; a version that passes the
        gate is then canaried (``then``). ``on=None`` turns the policy off. ``retrain_options``: as for
        :func:`ray_deploy.retrain` (``trainer``, ``search_space``, ``data``, ``num_samples``, ``rollout``, ...).

        Example:
            >>> get("churn").auto_retrain(on="drift", cooldown_s=600, then="canary", num_samples=4)
            >>> get("churn").status()["auto_retrain"]["on"]
            'drift'
        """
        from ray_deploy.auto_retrain import disable, enable
        from ray_deploy.config import AutoRetrainSpec, RetrainSpec, parse_spec

        if on is None:
            disable(self.name)
            return
        kept = ("trainer", "search_space", "data")  # objects, not options: they travel to the policy as they are
        objects: dict[str, Any] = {k: retrain_options.pop(k) for k in kept if k in retrain_options}
        retrain_spec = parse_spec(RetrainSpec, then=then, **retrain_options)
        spec = parse_spec(
            AutoRetrainSpec, on=on, cooldown_s=cooldown_s, every_s=every_s, min_metric=min_metric, retrain=retrain_spec
        )
        enable(self.name, spec, objects)

    def _input_names(self) -> list[str] | None:
        import mlflow

        from ray_deploy.dataplane.schema import InputSchema
        from ray_deploy.registry import model_uri, use_mlflow

        use_mlflow(Settings.from_env())
        schema = InputSchema.from_signature(
            mlflow.models.get_model_info(model_uri(self.name, str(self.version))).signature
        )
        return schema.names if schema is not None and schema.columns is not None else None

    def _handle(self) -> Any:
        from ray import serve

        connect()
        return serve.get_app_handle(self.name)

    def _user_config(self) -> dict[str, Any]:
        connect()
        app = _app(self.name)
        server = app.get("deployments", {}).get("ModelServer", {})
        return dict(server.get("deployment_config", {}).get("user_config") or {})

    def _repr_html_(self) -> str:
        try:
            doc = self.status()
        except RayDeployError as exc:
            return f"<b>{html.escape(self.name)}</b>: {html.escape(str(exc))}"
        return status_html(doc)


def status_html(doc: dict[str, Any]) -> str:
    """A static HTML rendering of a status document (for frontends without widgets)."""
    rep = doc["replicas"]
    traffic = doc.get("traffic") or {}
    cells = [
        ("state", doc["state"]),
        ("version", f"{doc.get('version')} ({doc['alias']})" if doc.get("alias") else doc.get("version")),
        (
            "replicas",
            f"{rep['current']} running / target {rep['target']} (min {rep['min']}, max {rep['max']})",
        ),
        ("QPS", traffic.get("qps")),
        ("p50 / p99 ms", f"{traffic.get('p50_ms')} / {traffic.get('p99_ms')}"),
        ("requests / errors", f"{traffic.get('requests')} / {traffic.get('errors')}"),
        ("endpoint", doc["url"]),
    ]
    rows = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in cells)
    return f"<div><b>ray-deploy: {html.escape(doc['name'])}</b><table>{rows}</table></div>"


def deploy(
    model: Any,
    name: str,
    *,
    sample_input: Any = None,
    predict_method: str = "predict",
    reference: Any = None,
    reference_labels: Any = None,
    capture: CaptureSpec | dict[str, Any] | bool | None = None,
    drift: DriftSpec | dict[str, Any] | None = None,
    show_progress: bool = True,
    timeout_s: float = 600.0,
    **options: Any,
) -> Deployment:
    """Register ``model`` as a new MLflow version of ``name`` and serve it; returns once it answers.

    ``model``: a scikit-learn estimator/pipeline, a ``torch.nn.Module``, an MLflow model URI, an
    ``mlflow.pyfunc.PythonModel`` or a callable. ``predict_method="predict_proba"`` serves class
    probabilities instead of labels (scikit-learn classifiers; torch modules get a softmax over their
    logits), and the signature, V2 metadata and OpenAPI document say so. ``options``: see :class:`DeployOptions`.
    Deploying to an existing name makes a new version and replaces the old one without downtime.

    Monitoring: requests are captured (``capture``: a :class:`CaptureSpec`, a dict of its fields, or False)
    and compared with ``reference`` (the training data; default: ``sample_input`` when it has 100+ rows),
    which is stored with the version in MLflow; ``drift`` (:class:`DriftSpec`) sets windows and thresholds.
    ``reference_labels`` (one label per reference row, e.g. ``y_train``) lets :func:`ray_deploy.retrain` train on
    the reference data too.
    A redeploy that omits ``capture``/``drift`` keeps the deployment's current ones.

    Governance: ``require_approval=True`` makes every promotion of a challenger (``promote()`` or a canary's last
    step) wait until a second person calls :meth:`Deployment.approve`. Such a deployment takes new versions only
    through a rollout (a direct redeploy is refused, before anything is registered); the policy is changed with
    ``scale(require_approval=False)``, an audited change. Every deploy, scale, delete, promotion, rollback
    and approval is written to the audit log (:func:`ray_deploy.audit.audit_log`).

    Example:
        >>> dep = deploy(clf, name="iris", sample_input=X[:5], min_replicas=0, max_replicas=2)
        >>> dep.version
        '1'
    """
    validate_name(name)
    opts = parse_options(**options)
    try:
        return _deploy(
            model,
            name,
            opts,
            sample_input,
            predict_method,
            reference,
            reference_labels,
            capture,
            drift,
            show_progress,
            timeout_s,
        )
    except Exception as exc:
        import ray

        if ray.is_initialized():  # a failure before connecting changed nothing on a cluster
            first = str(exc).partition("\n")[0]
            audit.record(
                "deploy",
                deployment=name,
                after={"options": opts.model_dump(exclude_defaults=True)},
                outcome=f"failed: {first}",
            )
        raise


def _deploy(
    model: Any,
    name: str,
    opts: DeployOptions,
    sample_input: Any,
    predict_method: str,
    reference: Any,
    reference_labels: Any,
    capture: CaptureSpec | dict[str, Any] | bool | None,
    drift: DriftSpec | dict[str, Any] | None,
    show_progress: bool,
    timeout_s: float,
) -> Deployment:
    from ray_deploy import registry

    kind = model_kind(model)
    method = check_predict_method(model, kind, predict_method)
    reference = choose_reference(reference, sample_input)
    if reference_labels is not None and (reference is None or len(reference_labels) != len(reference)):
        rows = "no reference data" if reference is None else f"{len(reference)} reference rows"
        raise ConfigError(
            f"reference_labels needs one label per reference row ({len(reference_labels)} labels, {rows}); "
            "pass reference=X_train with reference_labels=y_train"
        )
    connect()
    check_resources(opts)
    previous = Deployment(name)._user_config() if name in model_apps(serve_details()) else {}
    if previous.get("options", {}).get("require_approval"):  # before anything is registered: nothing to undo
        raise ConfigError(
            f"{name!r} requires a second person's approval for every new version it serves, so it cannot be "
            f"redeployed directly; roll the model out with ray_deploy.get({name!r}).canary(model) (its last step "
            f"waits for the approval), or turn the policy off first with scale(require_approval=False), which is "
            "audited"
        )
    with _Progress(name, show_progress) as progress:
        progress.stage(0)
        version = registry.register(model, kind, name, sample_input, method)
        progress.stage(1, f"version {version}")
        monitoring = resolve_monitoring(name, previous, capture, drift)
        if reference is not None:
            frame, predictions = prepare_reference(model, kind, name, version, reference, method, monitoring.drift)
            labels = None
            if reference_labels is not None:
                labels = reference_labels_of(reference_labels, len(reference), monitoring.drift)
            save_reference(name, version, frame, predictions, labels)
        served_kind = registry_kind(kind, version, name)
        try:
            _roll_out(name, version, served_kind, opts, monitoring=monitoring, timeout_s=timeout_s, progress=progress)
        except DeploymentFailed as exc:
            if previous.get("version"):
                _restore(name, previous)
                first, _, rest = str(exc).partition("\n")
                raise DeploymentFailed(f"{first}; version {previous['version']} keeps serving\n{rest}") from None
            raise
        progress.stage(2, f"version {version}")
    registry.set_champion(name, version)
    audit.record(
        "deploy",
        deployment=name,
        before={"version": previous.get("version"), **_replicas(previous.get("options", {}))} if previous else {},
        after={
            "version": version,
            "kind": kind,
            **_replicas(opts.model_dump()),
            "require_approval": opts.require_approval,
        },
    )
    return Deployment(name)


def _replicas(options: dict[str, Any]) -> dict[str, Any]:
    """The replica range of deployment options (for the audit log's before/after)."""
    full = DeployOptions(**options)
    return {"min_replicas": full.min_replicas, "max_replicas": full.max_replicas}


def registry_kind(kind: str, version: str, name: str) -> str:
    """The served flavor family of a version: a URI resolves to what it points at."""
    if kind != "uri":
        return kind
    import mlflow

    from ray_deploy.registry import model_uri

    flavors = mlflow.models.get_model_info(model_uri(name, version)).flavors
    return "torch" if "pytorch" in flavors else "pyfunc"


def _restore(name: str, previous: dict[str, Any]) -> None:
    opts = DeployOptions(**previous.get("options", {}))
    _roll_out(name, str(previous["version"]), previous.get("kind", "pyfunc"), opts, monitoring=_monitoring_of(previous))


def _monitoring_of(user_config: dict[str, Any]) -> Monitoring:
    """The capture and drift settings a deployment runs with (from its ``user_config``)."""
    from ray_deploy.dataplane.apps import Monitoring

    return Monitoring(
        CaptureSpec(**user_config.get("capture", {})),
        DriftSpec(**user_config.get("drift", {})),
        str(user_config.get("salt", "")),
    )


def _roll_out(
    name: str,
    version: str,
    kind: str,
    options: DeployOptions,
    *,
    monitoring: Monitoring | None = None,
    rollout: dict[str, Any] | None = None,
    timeout_s: float = 600.0,
    progress: _Progress | None = None,
) -> None:
    from ray_deploy.dataplane.apps import artifact_sources, build_model_app

    settings, dashboard_url = Settings.from_env(), cluster_info().dashboard_url
    challenger = str(rollout["challenger"]) if rollout is not None else None
    sources = artifact_sources(name, version, *([challenger] if challenger is not None else []))
    app = build_model_app(name, version, kind, options, settings, dashboard_url, monitoring, rollout, sources)
    started = time.time()
    run_app(app, name=name, route_prefix=f"{MODEL_ROUTE}{name}")
    _wait_until_serving(name, version, started, timeout_s, progress, challenger)


INGRESS_WAIT_S = 10.0  # at most this long for HAProxy to route a new app, after its replicas answer


def _wait_until_serving(
    name: str,
    version: str,
    started: float,
    timeout_s: float,
    progress: _Progress | None,
    challenger: str | None = None,
) -> None:
    """Wait until a replica serves ``version`` and splits to ``challenger`` (None: no split), or raise."""
    from ray import serve

    deadline = started + timeout_s
    while True:
        app = _app(name)
        status = state_of(app)
        if status == "DEPLOY_FAILED":
            details = _failure_message(app)
            raise DeploymentFailed(
                f"deployment {name!r} version {version} failed to start: {_root_cause(details)}\n"
                f"Serve's report, with the replica's traceback:\n{details}"
            )
        if status == "RUNNING":
            try:
                answer = _result(serve.get_app_handle(name).ready.remote(), timeout_s=30)
            except Exception as exc:  # a replica may still be swapping versions
                answer = {"error": str(exc)}
            if answer.get("version") == version and answer.get("challenger") == challenger:
                _wait_for_ingress(name, min(deadline, time.time() + INGRESS_WAIT_S))
                return
        if progress is not None:
            progress.note(_failure_message(app) or status.lower())
        if time.time() > deadline:
            raise DeploymentFailed(
                f"deployment {name!r} version {version} did not become healthy within {timeout_s:g}s "
                f"(state {status}): {_failure_message(app)}"
            )
        time.sleep(0.1)


def _wait_for_ingress(name: str, deadline: float) -> None:
    """Wait (bounded) until the local head's HAProxy routes HTTP to ``name``: it takes a new app's route a second or
    so after Serve reports the app running, and the first request must not wait for that. Any answer of the model
    server itself (200, or 401/403 to this request without a key) shows the route is live; HAProxy's own 404/503
    do not."""
    import requests

    settings = Settings.from_env()
    if not settings.direct_ingress or not cluster_info().local:
        return
    url = f"{settings.endpoint}{MODEL_ROUTE}{name}/ready"
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=5).status_code in (200, 401, 403):
                return
        except requests.RequestException:
            return  # the endpoint does not answer from here: nothing to wait for
        time.sleep(0.05)


def _root_cause(details: str) -> str:
    """The last ``SomeError: message`` line of a replica traceback (the user's actual exception)."""
    causes = re.findall(r"^\s*(?:[A-Za-z_]\w*\.)*(\w+(?:Error|Exception): .+)$", details, flags=re.MULTILINE)
    if causes:
        return str(causes[-1]).strip()
    return details.splitlines()[0] if details else "unknown error"


def _failure_message(app: dict[str, Any]) -> str:
    messages = [app.get("message") or ""]
    messages += [d.get("message") or "" for d in app.get("deployments", {}).values()]
    return " | ".join(m.strip() for m in messages if m and m.strip())


def check_resources(options: DeployOptions) -> None:
    """Fail fast when no node can ever host a replica and no autoscaler can add one.

    Example:
        >>> check_resources(DeployOptions(num_gpus=1))   # on a CPU-only local cluster
        Traceback (most recent call last):
        InsufficientResources: a replica asks for GPU=1 but no node of this cluster has that much ...
    """
    import ray

    if Settings.from_env().autoscaler:
        return
    wanted = {"CPU": options.num_cpus, "GPU": options.num_gpus, "memory": options.memory or 0}
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for resource, amount in wanted.items():
        if amount and not any(node.get(resource, 0) >= amount for node in nodes):
            biggest = max((node.get(resource, 0) for node in nodes), default=0)
            info = cluster_info()
            raise InsufficientResources(
                f"a replica asks for {resource}={amount:g} but no node of this cluster has that much "
                f"(largest node: {resource}={biggest:g}; cluster: {info.cpus:g} CPU, {info.gpus:g} GPU) and no "
                f"autoscaler can add one. Deploy with a smaller {_option_of(resource)}, or connect to a cluster "
                "that has it (set RAY_DEPLOY_AUTOSCALER=1 when an autoscaler adds nodes on demand)."
            )


def _option_of(resource: str) -> str:
    return {"CPU": "num_cpus", "GPU": "num_gpus"}.get(resource, resource)


def get(name: str) -> Deployment:
    """Re-attach to a deployment by name from any process.

    Example:
        >>> get("iris").url
        'http://127.0.0.1:8000/v2/models/iris'
    """
    connect()
    _app(name)
    return Deployment(name)


def list_deployments() -> list[dict[str, Any]]:
    """Every deployment on the cluster: name, state, version, URL.

    Example:
        >>> [d["name"] for d in list_deployments()]
        ['iris']
    """
    connect()
    endpoint = Settings.from_env().endpoint
    rows = []
    for name, app in sorted(model_apps(serve_details()).items()):
        server = app.get("deployments", {}).get("ModelServer", {})
        user_config = server.get("deployment_config", {}).get("user_config") or {}
        rows.append(
            {
                "name": name,
                "state": state_of(app),
                "version": user_config.get("version"),
                "model_kind": user_config.get("kind"),
                "url": f"{endpoint}{MODEL_ROUTE}{name}",
            }
        )
    return rows


def delete(name: str) -> None:
    """Remove a deployment from the cluster (its MLflow versions stay).

    Example:
        >>> delete("iris")
    """
    from ray import serve

    from ray_deploy.auto_retrain import stop
    from ray_deploy.rollouts import stop_controller

    connect()
    config = Deployment(name)._user_config()  # ModelNotFound for an unknown name
    before = {"version": config.get("version"), **_replicas(config.get("options", {}))}
    stop_controller(name)
    stop(name)
    try:
        serve.delete(name)
    except Exception as exc:
        audit.record("delete", deployment=name, before=before, outcome=f"failed: {exc}")
        raise
    audit.record("delete", deployment=name, before=before, after={"version": None})


def _app(name: str) -> dict[str, Any]:
    apps = model_apps(serve_details())
    if name not in apps:
        raise ModelNotFound(f"no deployment named {name!r}; deployed: {sorted(apps)}")
    return apps[name]


def _result(response: Any, timeout_s: float | None = None) -> Any:
    """Wait for a Serve handle call, also where an asyncio loop runs: a Jupyter kernel runs cells inside one,
    and Serve refuses to block there, so the wait happens in a daemon thread (still interruptible)."""
    import asyncio
    import threading

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return response.result(timeout_s=timeout_s)
    outcome: dict[str, Any] = {}

    def wait() -> None:
        try:
            outcome["value"] = response.result(timeout_s=timeout_s)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    waiter = threading.Thread(target=wait, name="ray-deploy-wait", daemon=True)
    waiter.start()
    waiter.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _unwrap(call: Any) -> Any:
    """Re-raise a replica's RayDeployError as itself instead of Ray's wrapper."""
    from ray.exceptions import RayTaskError

    try:
        return call()
    except RayTaskError as exc:
        cause = exc.cause if hasattr(exc, "cause") else None
        if isinstance(cause, RayDeployError):
            raise cause from None
        raise


class _Progress:
    """Deploy progress as one updating bar (tqdm: a widget in notebooks, a line in terminals)."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name = name
        self.enabled = enabled
        self.bar: Any = None
        self.last = ""

    def __enter__(self) -> _Progress:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=len(_STAGES),
                desc=f"deploy {self.name}",
                bar_format="{desc}: {n}/{total}{postfix}",
            )
        return self

    def stage(self, index: int, detail: str = "") -> None:
        if self.bar is not None:
            self.bar.n = index + (1 if index == len(_STAGES) - 1 else 0)
            self.bar.set_postfix_str(f"{_STAGES[index]} {detail}".strip())

    def note(self, text: str) -> None:
        postfix = f"{_STAGES[1]}: {text[:80]}"
        if self.bar is not None and postfix != self.last:
            self.last = postfix
            self.bar.set_postfix_str(postfix)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


def _rollout_spec(**fields: Any) -> RolloutSpec:
    """A validated :class:`RolloutSpec`, with pydantic's errors as one :class:`ConfigError`."""
    from pydantic import ValidationError

    try:
        return RolloutSpec(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid rollout: {where + ': ' if where else ''}{first['msg']}") from None

"""User-facing configuration: deployment options and environment settings.

Example:
    >>> opts = DeployOptions(num_cpus=0.5, min_replicas=0, max_replicas=4)
    >>> opts.autoscaling
    True
    >>> Settings.from_env().http_port
    8000
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ray_deploy.errors import ConfigError

_Spec = TypeVar("_Spec", bound=BaseModel)

DEFAULT_BATCH_SIZE_TORCH = 32


class DeployOptions(BaseModel):
    """How a model is served: resources, autoscaling, batching and request limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_cpus: float = Field(0.5, gt=0, le=1024, description="CPUs reserved per replica (fractional allowed).")
    num_gpus: float = Field(0.0, ge=0, le=64, description="GPUs per replica; fractional (e.g. 0.5) shares a GPU.")
    memory: int | None = Field(None, gt=0, description="Memory reserved per replica, in bytes.")
    min_replicas: int = Field(1, ge=0, le=1000, description="Fewest replicas; 0 scales to zero when idle.")
    max_replicas: int = Field(1, ge=1, le=1000, description="Most replicas the autoscaler may start.")
    initial_replicas: int | None = Field(
        None, ge=0, le=1000, description="Replicas started at deploy time (default: min_replicas)."
    )
    target_ongoing_requests: float = Field(
        2.0, gt=0, le=10_000, description="Autoscaler target of in-flight requests per replica."
    )
    upscale_delay_s: float = Field(
        2.0,
        ge=0,
        le=3600,
        description="Seconds of high load before adding replicas (Ray's default is 30; with 2 and the local head's "
        "half-second load reports a second replica serves within about 10 s of a load step).",
    )
    look_back_period_s: float = Field(
        5.0,
        gt=1,
        le=3600,
        description="Seconds of load the autoscaler averages over (Ray's default is 30, which damps a load step).",
    )
    downscale_delay_s: float = Field(60.0, ge=0, le=86_400, description="Seconds of low load before removing replicas.")
    max_batch_size: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Rows requests are batched into; default 32 for torch models, 1 (off) otherwise.",
    )
    batch_wait_timeout_s: float | None = Field(
        None,
        ge=0,
        le=10,
        description="Longest wait for a batch to fill before running it; unset: as long as recent batches took to "
        "run, between 1 and 10 ms (5 ms before the first batch), so a fast model barely waits and a slow one fills "
        "its batches.",
    )
    max_ongoing_requests: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="In-flight requests per replica (default: max(16, 2 x max_batch_size)).",
    )
    max_queued_requests: int = Field(
        256,
        ge=1,
        le=1_000_000,
        description="Requests that may wait for a busy replica, per caller (proxy or handle); more are refused at "
        "once with 503 and Retry-After instead of hanging.",
    )
    max_body_mb: float = Field(10.0, gt=0, le=1024, description="Largest accepted request body, in MB.")
    access_log: bool = Field(
        False,
        description="Serve's access log line per request in the replica log (off: request capture, the metrics and "
        "the audit trail already record every request, and the line costs about a tenth of a small model's "
        "requests/s). Errors and model tracebacks are logged either way.",
    )
    request_timeout_s: float = Field(60.0, gt=0, le=3600, description="Longest a prediction may take.")
    explain_max_rows: int = Field(
        1000, ge=1, le=1_000_000, description="Most rows one explanation request may ask for (more: 413)."
    )
    explain_chunk_rows: int = Field(
        200, ge=1, le=1_000_000, description="Rows per chunk; larger requests are explained in parallel Ray tasks."
    )
    explain_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="Longest an explanation may take before the request gets a 503."
    )
    require_approval: bool = Field(
        False,
        description="A challenger reaching 100% (promote() or a canary's last step) waits until a second person "
        "(not the one who started the rollout or asked to promote) calls approve(version).",
    )

    @model_validator(mode="after")
    def _check_replicas(self) -> DeployOptions:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas={self.min_replicas} is larger than max_replicas={self.max_replicas}; "
                "raise max_replicas or lower min_replicas"
            )
        if self.initial_replicas is not None and not (self.min_replicas <= self.initial_replicas <= self.max_replicas):
            raise ValueError(
                f"initial_replicas={self.initial_replicas} must lie between "
                f"min_replicas={self.min_replicas} and max_replicas={self.max_replicas}"
            )
        return self

    @property
    def autoscaling(self) -> bool:
        """Whether the replica count is left to Serve's autoscaler (otherwise it is fixed)."""
        return self.min_replicas != self.max_replicas

    def batch_size(self, is_torch: bool) -> int:
        """The effective batch size: the option, else 32 for torch and 1 (no batching) otherwise."""
        if self.max_batch_size is not None:
            return self.max_batch_size
        return DEFAULT_BATCH_SIZE_TORCH if is_torch else 1

    def ongoing_requests(self, is_torch: bool) -> int:
        """The effective ``max_ongoing_requests`` per replica."""
        if self.max_ongoing_requests is not None:
            return self.max_ongoing_requests
        return max(16, 2 * self.batch_size(is_torch))


class CaptureSpec(BaseModel):
    """What a deployment records of its requests (inputs, outputs, request id, version, latency, time).

    Captured rows land as Parquet under ``Settings.capture_uri`` and feed drift, data quality and the
    label join. Excluded columns never leave the replica; hashed columns leave it only as salted SHA-256
    digests (pseudonyms that still join and count, not anonymisation: a guessable value can be guessed).

    Example:
        >>> CaptureSpec(sample_rate=0.1, exclude=["email"], hash=["customer_id"], retention_days=30)
        CaptureSpec(enabled=True, sample_rate=0.1, ...)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Capture requests at all; off costs nothing on the request path.")
    sample_rate: float = Field(1.0, ge=0, le=1, description="Share of requests captured (1.0: all).")
    max_per_s: float = Field(
        500.0, gt=0, le=1_000_000, description="Most requests captured per second per replica (the rate cap)."
    )
    exclude: list[str] = Field(default_factory=list, description="Input columns never captured.")
    hash: list[str] = Field(default_factory=list, description="Input columns captured only as salted SHA-256 digests.")
    retention_days: float = Field(30.0, gt=0, le=36_500, description="Captured data older than this is deleted.")

    @model_validator(mode="after")
    def _check_columns(self) -> CaptureSpec:
        both = sorted(set(self.exclude) & set(self.hash))
        if both:
            raise ValueError(f"columns {both} are both in exclude and hash; list each in one of them")
        return self


class DriftSpec(BaseModel):
    """How drift is measured: window size, thresholds and the alarm's hysteresis.

    A window closes after ``window_rows`` captured rows, or after ``window_s`` seconds with at least
    ``min_rows``. A feature drifts when its Benjamini-Hochberg adjusted p-value is below ``alpha`` *and* its
    effect size passes the threshold, so large windows do not flag trivial differences.

    Example:
        >>> DriftSpec(window_rows=1000, raise_after=2)
        DriftSpec(window_rows=1000, ...)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_rows: int = Field(500, ge=20, le=10_000_000, description="Rows that close a window.")
    window_s: float = Field(600.0, gt=0, le=7 * 86_400, description="Seconds that close a window (with min_rows).")
    min_rows: int = Field(100, ge=10, le=10_000_000, description="Fewest rows a time-closed window needs.")
    alpha: float = Field(0.01, gt=0, lt=1, description="False discovery rate across a window's feature tests.")
    ks_threshold: float = Field(0.1, gt=0, le=1, description="Smallest KS statistic (effect size) that counts.")
    psi_threshold: float = Field(0.2, gt=0, description="PSI at or above which a feature counts as drifted.")
    js_threshold: float = Field(0.1, gt=0, le=1, description="Smallest Jensen-Shannon distance that counts.")
    auc_threshold: float = Field(
        0.6, gt=0.5, le=1, description="Domain-classifier AUC at or above which the window drifted as a whole."
    )
    raise_after: int = Field(2, ge=1, le=100, description="Drifted windows in a row that raise the alarm.")
    clear_after: int = Field(3, ge=1, le=100, description="Clean windows in a row that clear it.")
    reference_rows: int = Field(
        100_000, ge=10, le=10_000_000, description="Most reference rows kept (a uniform sample beyond that)."
    )

    @model_validator(mode="after")
    def _check_rows(self) -> DriftSpec:
        if self.min_rows > self.window_rows:
            raise ValueError(f"min_rows={self.min_rows} is larger than window_rows={self.window_rows}")
        return self


class GateSpec(BaseModel):
    """When a canary step passes: what the challenger may not do worse than the champion on the same window.

    Example:
        >>> GateSpec(max_error_rate_increase=0.01, max_p99_ratio=1.5)
        GateSpec(max_error_rate_increase=0.01, ...)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_requests: int = Field(
        50, ge=1, le=10_000_000, description="Challenger requests a step needs before its gates decide."
    )
    max_error_rate_increase: float = Field(
        0.02, ge=0, le=1, description="Largest allowed challenger error rate minus the champion's."
    )
    max_p99_ratio: float = Field(2.0, gt=1, le=100, description="Largest allowed challenger p99 / champion p99.")
    p99_slack_ms: float = Field(
        5.0,
        ge=0,
        le=60_000,
        description="The latency gate's limit is also at least this many ms above the champion's p99: a champion that "
        "answers in a millisecond or two makes a 2x ratio scheduling noise.",
    )
    max_prediction_shift: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Largest allowed KS D (numeric) or Jensen-Shannon distance (classes) between "
        "the two versions' predictions.",
    )
    min_accuracy_delta: float = Field(
        -0.02,
        ge=-1,
        le=1,
        description="Smallest allowed challenger metric minus the champion's, once both have labels.",
    )
    min_labels: int = Field(
        30, ge=1, le=10_000_000, description="Labels per version before the accuracy and fairness gates count."
    )
    sensitive: tuple[str, ...] = Field(
        (),
        description="Input columns naming the groups (e.g. sex) for the fairness gate; empty: no fairness gate. "
        "Needs a binary classifier and delayed labels.",
    )
    # the metrics ray_deploy.fairness.fairness_gate supports (its HEADLINE_METRICS; a unit test keeps them equal)
    fairness_metric: Literal[
        "demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference", "disparate_impact"
    ] = Field(
        "demographic_parity_difference",
        description="The fairness gate's metric: how the groups' outcomes differ (fairness.HEADLINE_METRICS).",
    )
    max_fairness_increase: float = Field(
        0.05, ge=0, le=1, description="Largest allowed worsening of fairness_metric from champion to challenger."
    )

    @model_validator(mode="after")
    def _check_sensitive(self) -> GateSpec:
        if any(not isinstance(c, str) or not c.strip() for c in self.sensitive) or len(set(self.sensitive)) != len(
            self.sensitive
        ):
            raise ValueError(f"sensitive must name distinct input columns, got {list(self.sensitive)}")
        return self


class RolloutSpec(BaseModel):
    """A canary: the challenger's traffic share per step, how long each step lasts, and its gates.

    Example:
        >>> RolloutSpec(steps=(0.1, 0.5, 1.0), step_s=30)
        RolloutSpec(steps=(0.1, 0.5, 1.0), step_s=30.0, ...)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: tuple[float, ...] = Field((0.05, 0.25, 0.5, 1.0), description="Challenger shares, rising, ending at 1.0.")
    step_s: float = Field(60.0, gt=0, le=7 * 86_400, description="Seconds each step lasts before its gates decide.")
    gates: GateSpec = Field(default_factory=GateSpec, description="What a step must pass.")
    sticky_header: str | None = Field(
        None, description="Request header whose value keeps one caller on one version (e.g. x-user-id)."
    )

    @model_validator(mode="after")
    def _check_steps(self) -> RolloutSpec:
        steps = self.steps
        if not steps or any(not 0 < s <= 1 for s in steps) or list(steps) != sorted(set(steps)):
            raise ValueError(f"steps must rise strictly within (0, 1], got {list(steps)}")
        if steps[-1] != 1.0:
            raise ValueError(f"the last step must be 1.0 (the challenger takes all traffic), got {steps[-1]}")
        return self


class RetrainSpec(BaseModel):
    """How a retrain searches (Ray Tune) and what happens to a new version that beats the champion.

    Example:
        >>> RetrainSpec(num_samples=4, resources_per_trial={"cpu": 0.5}, then="canary")
        RetrainSpec(num_samples=4, scheduler='asha', ...)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_samples: int = Field(8, ge=1, le=10_000, description="Tune trials.")
    scheduler: Literal["asha", "fifo"] = Field("asha", description="asha stops weak trials early; fifo runs all.")
    resources_per_trial: dict[str, float] = Field(
        default_factory=lambda: {"cpu": 1.0, "gpu": 0.0},
        description="Resources of each trial: cpu and gpu, fractions allowed (gpu 0.5 shares a GPU by two trials).",
    )
    time_budget_s: float | None = Field(None, gt=0, le=7 * 86_400, description="Stop Tune after this many seconds.")
    metric: str | None = Field(None, description="What Tune optimizes; default accuracy (classifiers) or rmse.")
    mode: Literal["max", "min"] | None = Field(
        None, description="Whether a larger metric is better; default by metric."
    )
    then: Literal["register", "canary", "shadow", "deploy"] = Field(
        "register", description="What happens to a new version that passes the evaluation gate."
    )
    min_improvement: float = Field(
        0.0,
        ge=0,
        description="How much better than the champion (metric units) the new version must score on recent labelled "
        "traffic (on held-out rows when there is none).",
    )
    max_regression: float = Field(
        0.02, ge=0, description="How much worse than the champion it may score on held-out rows (recent rows decide)."
    )
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="The canary's steps when then='canary'.")

    @field_validator("resources_per_trial")
    @classmethod
    def _check_resources(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - {"cpu", "gpu"}
        if unknown:
            raise ValueError(f"resources_per_trial takes 'cpu' and 'gpu', not {sorted(unknown)}")
        if any(v < 0 for v in value.values()) or value.get("cpu", 1.0) <= 0:
            raise ValueError(f"resources_per_trial needs cpu > 0 and gpu >= 0, got {value}")
        return {"cpu": float(value.get("cpu", 1.0)), "gpu": float(value.get("gpu", 0.0))}


class AutoRetrainSpec(BaseModel):
    """When the cluster retrains a deployment on its own, and what it does with the result.

    Example:
        >>> AutoRetrainSpec(on="drift", cooldown_s=600, retrain=RetrainSpec(then="canary"))
        AutoRetrainSpec(on='drift', cooldown_s=600.0, ...)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    on: Literal["drift", "schedule", "performance"] = Field(description="What triggers a retrain.")
    cooldown_s: float = Field(3600.0, ge=0, le=30 * 86_400, description="Least seconds between two retrains.")
    every_s: float | None = Field(None, gt=0, description="The period when on='schedule'.")
    min_metric: float | None = Field(
        None, description="When on='performance': retrain when the labelled metric falls below this (rmse: above)."
    )
    retrain: RetrainSpec = Field(default_factory=RetrainSpec, description="How each retrain runs.")

    @model_validator(mode="after")
    def _check_trigger(self) -> AutoRetrainSpec:
        if self.on == "schedule" and self.every_s is None:
            raise ValueError("on='schedule' needs every_s, e.g. every_s=86400 for daily")
        if self.on == "performance" and self.min_metric is None:
            raise ValueError("on='performance' needs min_metric, e.g. min_metric=0.8")
        return self


def parse_options(base: DeployOptions | None = None, **changes: Any) -> DeployOptions:
    """Validate options, turning pydantic's errors into one readable :class:`ConfigError`.

    Example:
        >>> parse_options(min_replicas=0, max_replicas=2).min_replicas
        0
    """
    merged = {**(base.model_dump(exclude_unset=True) if base else {}), **changes}
    try:
        return DeployOptions(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def parse_spec(model: type[_Spec], **fields: Any) -> _Spec:
    """Validate a spec (``RetrainSpec``, ``RolloutSpec``, ...), turning pydantic's errors into one :class:`ConfigError`.

    Example:
        >>> parse_spec(RetrainSpec, num_samples=0)
        Traceback (most recent call last):
        ConfigError: invalid retrain: num_samples: Input should be greater than or equal to 1 (got 0)
    """
    try:
        return model(**fields)
    except ValidationError as exc:
        what = model.__name__.removesuffix("Spec").lower()
        raise ConfigError(_describe(exc, f"invalid {what}")) from None


def _describe(exc: ValidationError, title: str = "invalid deployment options") -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden" and title == "invalid deployment options":
            known = ", ".join(DeployOptions.model_fields)
            msg = f"unknown option; known options: {known}"
        elif "input" in err and where:
            msg = f"{msg} (got {err['input']!r})"
        parts.append(f"{where}: {msg}" if where else msg)
    return f"{title}: " + "; ".join(parts)


class Settings(BaseModel):
    """Where things run, read from environment variables (see the README's configuration table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(description="RAY_DEPLOY_HOME: project home for the local MLflow store and logs.")
    ray_address: str | None = Field(description="RAY_ADDRESS: an existing Ray cluster to use.")
    mlflow_uri: str = Field(description="MLFLOW_TRACKING_URI: the MLflow tracking and registry store.")
    http_host: str = Field(description="RAY_DEPLOY_HTTP_HOST: where Serve's HTTP proxy listens.")
    http_port: int = Field(ge=1, le=65535, description="RAY_DEPLOY_HTTP_PORT: Serve's HTTP port.")
    ray_port: int = Field(ge=1, le=65535, description="RAY_DEPLOY_RAY_PORT: the local head's GCS port.")
    dashboard_port: int = Field(ge=1, le=65535, description="RAY_DEPLOY_DASHBOARD_PORT: Ray dashboard port.")
    num_cpus: int | None = Field(ge=1, description="RAY_DEPLOY_NUM_CPUS: CPUs the local head offers.")
    autoscaler: bool = Field(
        description="RAY_DEPLOY_AUTOSCALER=1: the cluster adds nodes on demand, so wait for resources."
    )
    capture_uri: str = Field(
        description="RAY_DEPLOY_CAPTURE_URI: where captured requests land as Parquet (a folder, or a pyarrow "
        "filesystem URI such as s3://bucket/captures for remote clusters)."
    )
    metrics_port: int = Field(
        ge=1, le=65535, description="RAY_DEPLOY_METRICS_PORT: the local head's Prometheus metrics port."
    )
    grpc_port: int = Field(
        ge=1,
        le=65535,
        description="RAY_DEPLOY_GRPC_PORT: the V2 gRPC endpoint (inference.GRPCInferenceService) on "
        "RAY_DEPLOY_HTTP_HOST.",
    )
    ingress: Literal["haproxy", "proxy"] = Field(
        description="RAY_DEPLOY_INGRESS: `haproxy` (default) runs Serve's HAProxy direct ingress on a local head "
        "(replicas answer HTTP themselves); `proxy` runs Serve's Python HTTP proxy. TLS always uses `proxy`.",
    )
    tls_cert: Path | None = Field(
        None,
        description="RAY_DEPLOY_TLS_CERT: PEM certificate (chain) of the Serve HTTP endpoint; with RAY_DEPLOY_TLS_KEY "
        "the endpoint serves HTTPS only.",
    )
    tls_key: Path | None = Field(None, description="RAY_DEPLOY_TLS_KEY: PEM private key of RAY_DEPLOY_TLS_CERT.")
    audit_path: Path = Field(
        None,  # type: ignore[assignment]  # filled in by the validator below: home/audit.jsonl
        description="RAY_DEPLOY_AUDIT_PATH: the audit log (JSON lines, hash-chained), written only by the "
        "ray-deploy-audit actor on the head node (default: <RAY_DEPLOY_HOME>/audit.jsonl).",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_audit_path(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("audit_path") is None and data.get("home") is not None:
            return {**data, "audit_path": Path(data["home"]) / "audit.jsonl"}
        return data

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                f"TLS needs both RAY_DEPLOY_TLS_CERT ({self.tls_cert}) and RAY_DEPLOY_TLS_KEY ({self.tls_key}); "
                "set both, or neither for plain HTTP"
            )
        return self

    @classmethod
    def from_env(cls) -> Settings:
        """Read the settings from ``os.environ`` with the documented defaults."""
        env = os.environ
        home = Path(env.get("RAY_DEPLOY_HOME", "~/.ray_deploy")).expanduser().resolve()
        try:
            return cls(
                home=home,
                ray_address=env.get("RAY_ADDRESS") or None,
                mlflow_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}",
                http_host=env.get("RAY_DEPLOY_HTTP_HOST", "127.0.0.1"),
                http_port=int(env.get("RAY_DEPLOY_HTTP_PORT", "8000")),
                ray_port=int(env.get("RAY_DEPLOY_RAY_PORT", "6379")),
                dashboard_port=int(env.get("RAY_DEPLOY_DASHBOARD_PORT", "8265")),
                num_cpus=int(env["RAY_DEPLOY_NUM_CPUS"]) if env.get("RAY_DEPLOY_NUM_CPUS") else None,
                autoscaler=env.get("RAY_DEPLOY_AUTOSCALER", "0") == "1",
                capture_uri=env.get("RAY_DEPLOY_CAPTURE_URI") or str(home / "captures"),
                metrics_port=int(env.get("RAY_DEPLOY_METRICS_PORT", "8090")),
                grpc_port=int(env.get("RAY_DEPLOY_GRPC_PORT", "9000")),
                ingress=env.get("RAY_DEPLOY_INGRESS", "haproxy"),
                tls_cert=_path_env("RAY_DEPLOY_TLS_CERT"),
                tls_key=_path_env("RAY_DEPLOY_TLS_KEY"),
                audit_path=Path(env["RAY_DEPLOY_AUDIT_PATH"]).expanduser()
                if env.get("RAY_DEPLOY_AUDIT_PATH")
                else None,
            )
        except (ValidationError, ValueError) as exc:
            raise ConfigError(f"invalid ray-deploy environment settings: {exc}") from None

    def to_env(self) -> dict[str, str]:
        """The environment variables that make :meth:`from_env` read these settings back (its inverse).

        A variable whose setting is unset (``RAY_ADDRESS``, ``RAY_DEPLOY_NUM_CPUS``, the TLS files) is left out, so
        it must be unset where the result is applied. Used to give another process (a Ray Job's CLI) the settings
        of this one: same store, endpoint and ports.

        Example:
            >>> Settings.from_env().to_env()["RAY_DEPLOY_HTTP_PORT"]
            '8000'
        """
        env = {
            "RAY_DEPLOY_HOME": str(self.home),
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "RAY_DEPLOY_HTTP_HOST": self.http_host,
            "RAY_DEPLOY_HTTP_PORT": str(self.http_port),
            "RAY_DEPLOY_RAY_PORT": str(self.ray_port),
            "RAY_DEPLOY_DASHBOARD_PORT": str(self.dashboard_port),
            "RAY_DEPLOY_AUTOSCALER": "1" if self.autoscaler else "0",
            "RAY_DEPLOY_CAPTURE_URI": self.capture_uri,
            "RAY_DEPLOY_METRICS_PORT": str(self.metrics_port),
            "RAY_DEPLOY_GRPC_PORT": str(self.grpc_port),
            "RAY_DEPLOY_INGRESS": self.ingress,
            "RAY_DEPLOY_AUDIT_PATH": str(self.audit_path),
        }
        if self.ray_address is not None:
            env["RAY_ADDRESS"] = self.ray_address
        if self.num_cpus is not None:
            env["RAY_DEPLOY_NUM_CPUS"] = str(self.num_cpus)
        if self.tls_cert is not None and self.tls_key is not None:
            env["RAY_DEPLOY_TLS_CERT"] = str(self.tls_cert)
            env["RAY_DEPLOY_TLS_KEY"] = str(self.tls_key)
        return env

    @property
    def artifact_root(self) -> Path:
        """Folder for MLflow artifacts when the store is the local default."""
        return self.home / "artifacts"

    @property
    def endpoint(self) -> str:
        """Base URL of the HTTP API, e.g. ``http://127.0.0.1:8000`` (``https://`` when TLS is configured)."""
        return f"{'https' if self.tls else 'http'}://{self.http_host}:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        """Where V2 gRPC clients connect, e.g. ``127.0.0.1:9000`` (``tritonclient.grpc.InferenceServerClient(url)``)."""
        return f"{self.http_host}:{self.grpc_port}"

    @property
    def direct_ingress(self) -> bool:
        """Whether a local head runs Serve's HAProxy direct ingress (``ingress == "haproxy"`` and no TLS: Serve's
        HAProxy front end serves plain HTTP only, so an HTTPS endpoint keeps the Python proxy)."""
        return self.ingress == "haproxy" and not self.tls

    @property
    def tls(self) -> bool:
        """Whether the Serve HTTP endpoint serves HTTPS (certificate and key configured)."""
        return self.tls_cert is not None and self.tls_key is not None


def _path_env(key: str) -> Path | None:
    """An optional file path setting: None when the variable is unset or empty."""
    value = os.environ.get(key)
    return Path(value).expanduser().resolve() if value else None


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
RESERVED_NAMES = frozenset({"ray-deploy"})


def validate_name(name: Any) -> str:
    """Check a deployment name: it becomes a URL path segment and an MLflow registered model name.

    Example:
        >>> validate_name("churn-v2")
        'churn-v2'
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"invalid deployment name {name!r}: use 1-63 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit (e.g. 'churn' or 'fraud-v2')"
        )
    if name in RESERVED_NAMES:
        raise ConfigError(f"the name {name!r} is reserved for the ray-deploy server; choose another")
    return name

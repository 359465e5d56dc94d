"""Safe rollouts: canary, shadow and A/B test of a challenger version, driven from the cluster.

A rollout is run by a detached ``RolloutController`` actor (one per deployment), so closing the notebook or
restarting the kernel neither stops nor duplicates it; :class:`Rollout` re-attaches by name. The controller reads
both versions' windows from the deployment's Monitor, lets the pure :func:`ray_deploy.rollout.decide` choose (wait,
advance, promote, roll back), and applies the choice by updating the application's configuration in place: the
champion replicas split traffic inline (only the challenger's share takes a handle hop; shadow copies are
fire-and-forget). Promotion and rollback switch what serves, and the ``champion``/``challenger`` aliases, with no
failed requests.

Example:
    >>> rollout = start("churn", "canary", new_model, spec=RolloutSpec(steps=(0.1, 0.5, 1.0), step_s=30))
    >>> rollout.status()["message"]
    'step 1/3: 10% to v4, 25 s left; gates pass so far'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from dataclasses import replace
from typing import Any

from ray_deploy import audit
from ray_deploy.config import RolloutSpec, Settings
from ray_deploy.errors import ConfigError, ModelNotFound, NotReady

log = logging.getLogger(__name__)

NAMESPACE = "ray_deploy_rollouts"
TICK_S = 1.0
CHALLENGER = "challenger"
CONTROLLER = "controller:rollout"
_AUDIT_ACTION = {"canary": "canary_start", "shadow": "shadow_start", "ab": "abtest_start"}


def controller_name(name: str) -> str:
    """The detached actor's name for deployment ``name``."""
    return f"ray-deploy-rollout-{name}"


def _controller(name: str) -> Any:
    import ray

    try:
        return ray.get_actor(controller_name(name), namespace=NAMESPACE)
    except ValueError:
        return None


def _running(name: str) -> Any:
    """The controller of a rollout of ``name`` that has not ended, or None."""
    import ray

    actor = _controller(name)
    try:
        return actor if actor is not None and not ray.get(actor.is_final.remote(), timeout=60) else None
    except ray.exceptions.RayActorError:  # it exited meanwhile
        return None


class Rollout:
    """A handle on the rollout of a deployment, running in the cluster (re-attach with ``get(name).rollout``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Rollout(name={self.name!r})"

    def status(self) -> dict[str, Any]:
        """The rollout section of the status document (a ``documents.RolloutSection`` dict)."""
        from ray_deploy.deployment import Deployment

        section = Deployment(self.name).status().get("rollout")
        if section is None:
            raise NotReady(f"{self.name!r} has no rollout; start one with canary(), shadow() or ab_test()")
        return dict(section)

    def report(self) -> dict[str, Any]:
        """Shadow: agreement, latency delta, output shift; A/B: per-arm metric, difference, CI, p, samples needed."""
        return dict(self.status()["report"])

    def pause(self) -> None:
        """Stop deciding; the split stays as it is."""
        self._call("pause")

    def resume(self) -> None:
        """Decide again (the paused time does not count toward the step)."""
        self._call("resume")

    def abort(self) -> None:
        """End the rollout; all traffic goes back to the champion."""
        self._call("abort")

    def approve(self, version: str | None = None) -> None:
        """Approve the promotion of the challenger (``version``, when given, must be it); with approval required,
        the approver must be a second person (``audit.current_identity()``), not the one who started the rollout
        or asked to promote."""
        self._call("approve", None if version is None else str(version))

    def promote(self) -> bool:
        """Make the challenger the champion now; with approval required and not yet given, the rollout waits for
        :meth:`approve` instead (returns False)."""
        return bool(self._call("promote"))

    def rollback(self) -> None:
        """Send all traffic back to the champion now."""
        self._call("rollback")

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        from ray_deploy.cluster import connect

        connect()
        actor = _controller(self.name)
        if actor is None:
            raise NotReady(f"no rollout of {self.name!r} is running")
        try:
            return ray.get(getattr(actor, method).remote(*args, who=audit.current_identity()), timeout=600)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ConfigError | NotReady):
                raise cause from None
            raise


def start(
    name: str,
    mode: str,
    model_or_version: Any,
    *,
    spec: RolloutSpec | None = None,
    share: float | None = None,
    metric: str = "accuracy",
    sample_input: Any = None,
    requires_approval: bool = False,
) -> Rollout:
    """Start a canary, shadow or A/B test of ``model_or_version`` (a model, registered as a new version, or a
    version number) against the serving version of ``name``; returns once the challenger serves its share."""
    import ray

    from ray_deploy.cluster import connect
    from ray_deploy.deployment import Deployment
    from ray_deploy.registry import use_mlflow
    from ray_deploy.rollout import start_rollout

    connect()
    use_mlflow(Settings.from_env())
    config = Deployment(name)._user_config()
    champion = str(config["version"])
    requires_approval = requires_approval or bool(config.get("options", {}).get("require_approval", False))
    if _running(name) is not None:
        raise ConfigError(
            f"a rollout of {name!r} is already running; promote, roll back or abort it first "
            f"(ray_deploy.get({name!r}).rollout)"
        )
    spec = spec or RolloutSpec()
    _check_sensitive(name, spec)
    version, kind = _challenger(name, model_or_version, sample_input, config)
    if version == champion:
        raise ConfigError(f"version {version} already serves {name!r}; a rollout needs another version")
    state = start_rollout(
        uuid.uuid4().hex[:12],
        mode,  # type: ignore[arg-type]
        spec,
        champion,
        version,
        time.time(),
        share=share,
        requires_approval=requires_approval,
        started_by=audit.current_identity(),
    )
    actor = ray.remote(RolloutController).options(  # type: ignore[attr-defined]
        name=controller_name(name), namespace=NAMESPACE, lifetime="detached", num_cpus=0, max_concurrency=8
    )
    ended = _controller(name)
    if ended is not None:  # a finished rollout's controller on its way out: free its name
        ray.kill(ended)
        deadline = time.time() + 30
        while _controller(name) is not None and time.time() < deadline:
            time.sleep(0.2)
    controller: Any = actor.remote(name, state, kind, metric, Settings.from_env().to_env())
    after = {
        "champion": champion,
        "challenger": version,
        "share": state.share,
        "steps": list(spec.steps) if mode == "canary" else [state.share],
        "requires_approval": requires_approval,
    }
    try:
        ray.get(controller.begin.remote(), timeout=600)
    except Exception as exc:
        ray.kill(controller)
        audit.record(
            _AUDIT_ACTION[mode], deployment=name, before={"version": champion}, after=after, outcome=f"failed: {exc}"
        )
        raise
    controller.run.remote()
    audit.record(_AUDIT_ACTION[mode], deployment=name, before={"version": champion}, after=after)
    return Rollout(name)


def _check_sensitive(name: str, spec: RolloutSpec) -> None:
    """Fail early when the fairness gate's sensitive columns are not among the serving version's input columns."""
    sensitive = list(spec.gates.sensitive)
    if not sensitive:
        return
    from ray_deploy.deployment import Deployment

    try:
        names = Deployment(name)._input_names()
    except Exception:  # no signature to check against: the gate reports a missing column while it runs
        log.debug("rollout of %s: could not read the input columns to check gates.sensitive", name, exc_info=True)
        return
    if names is None:
        return
    missing = [c for c in sensitive if c not in names]
    if missing:
        raise ConfigError(
            f"gates.sensitive names {missing}, which {name!r} does not take as input (its columns: {list(names)}); "
            "pass input columns that name the groups, e.g. gates={'sensitive': ['sex']}"
        )


def _challenger(name: str, model_or_version: Any, sample_input: Any, config: dict[str, Any]) -> tuple[str, str]:
    """The challenger's version and served kind: a version number as given, or a model registered now."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ray_deploy import registry
    from ray_deploy.deployment import registry_kind
    from ray_deploy.package import model_kind

    if isinstance(model_or_version, (str, int)) and str(model_or_version).isdigit():
        version = str(model_or_version)
        try:
            info = MlflowClient().get_model_version(name, version)
        except MlflowException:
            raise ModelNotFound(f"{name!r} has no version {version}; see ray_deploy.get({name!r}).versions()") from None
        kind = (info.tags or {}).get("ray_deploy.model_kind", "uri")
    else:
        kind = model_kind(model_or_version)
        version = registry.register(model_or_version, kind, name, sample_input)
    return version, registry_kind(kind, version, name)


def promote(name: str) -> bool:
    """Make the challenger the champion: through the running rollout, else the ``challenger`` alias' version.

    Returns False when the deployment requires approval and it has not been given: the rollout then waits at
    ``awaiting_approval`` until a second person calls :func:`approve`.
    """
    from ray_deploy.cluster import connect
    from ray_deploy.deployment import Deployment
    from ray_deploy.registry import use_mlflow

    connect()
    use_mlflow(Settings.from_env())
    if _running(name) is not None:
        return Rollout(name).promote()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        version = MlflowClient().get_model_version_by_alias(name, CHALLENGER).version
    except MlflowException:
        raise ConfigError(f"{name!r} has no challenger to promote; start a canary, shadow or A/B test") from None
    if Deployment(name).options.require_approval:
        raise ConfigError(
            f"{name!r} requires approval to promote, which needs a running rollout to wait in; start one with "
            f"ray_deploy.get({name!r}).canary({str(version)!r}), promote it, and have a second person approve it"
        )
    _switch_recorded(name, "promote", str(version))
    return True


def approve(name: str, version: str | None = None) -> None:
    """Approve the promotion of the running rollout's challenger (``version``: it must be that challenger); the
    approver (``audit.current_identity()``) must not be who started the rollout or asked to promote it.

    Example:
        >>> with audit.acting_as("user:bob"):
        ...     approve("churn", "4")
    """
    from ray_deploy.cluster import connect

    connect()
    if _running(name) is None:
        raise NotReady(f"no rollout of {name!r} is running, so there is no promotion to approve")
    Rollout(name).approve(version)


def _switch_recorded(name: str, action: str, version: str) -> None:
    """``switch_to`` as one audited action (its before/after versions and outcome)."""
    from ray_deploy.deployment import Deployment

    before = Deployment(name).version
    try:
        switch_to(name, version)
    except Exception as exc:
        audit.record(
            action, deployment=name, before={"version": before}, after={"version": version}, outcome=f"failed: {exc}"
        )
        raise
    audit.record(action, deployment=name, before={"version": before}, after={"version": version})


def rollback(name: str, to_version: str | None = None) -> None:
    """End the running rollout (all traffic to the champion), or serve ``to_version`` (default: the previous one)."""
    from ray_deploy.cluster import connect
    from ray_deploy.registry import use_mlflow

    connect()
    use_mlflow(Settings.from_env())
    if _running(name) is not None and to_version is None:
        Rollout(name).rollback()
        return
    from ray_deploy.deployment import Deployment

    current = Deployment(name).version
    if to_version is None:
        from ray_deploy.dataplane.served_model import versions

        older = [v for v in versions(name) if current is not None and int(v) < int(current)]
        if not older:
            raise ConfigError(f"{name!r} has no version before {current} to roll back to")
        to_version = older[-1]
    newer = current is not None and str(to_version).isdigit() and int(to_version) > int(current)
    if newer and Deployment(name).options.require_approval:
        raise ConfigError(
            f"{name!r} requires approval for new versions: a rollback goes back to an older version than "
            f"{current}, and version {to_version} is newer; roll it out with ray_deploy.get({name!r}).canary("
            f"{str(to_version)!r}) so that a second person approves it"
        )
    _switch_recorded(name, "rollback", str(to_version))


def stop_controller(name: str) -> None:
    """Remove the rollout controller of ``name`` (when the deployment is deleted)."""
    import ray

    actor = _controller(name)
    if actor is not None:
        ray.kill(actor)


def switch_to(name: str, version: str, rollout: dict[str, Any] | None = None) -> None:
    """Serve ``version`` of ``name`` (an in-place reconfigure) and point ``champion`` at it once it serves."""
    from mlflow import MlflowClient

    from ray_deploy.config import DeployOptions
    from ray_deploy.deployment import Deployment, _monitoring_of, _roll_out, registry_kind
    from ray_deploy.registry import set_champion, use_mlflow

    use_mlflow(Settings.from_env())
    config = Deployment(name)._user_config()
    info = MlflowClient().get_model_version(name, version)
    kind = registry_kind((info.tags or {}).get("ray_deploy.model_kind", "uri"), version, name)
    options, monitoring = DeployOptions(**config.get("options", {})), _monitoring_of(config)
    ending = config.get("rollout")
    if rollout is None and ending:
        # Two steps: first the champion serves ``version`` and sends nothing more to the challenger, then the
        # challenger's replicas go. In one step a request the champion forwarded just before would wait for a
        # challenger replica that is no longer there (seconds, until one starts again).
        _roll_out(name, version, kind, options, monitoring=monitoring, rollout={**ending, "share": 0.0})
    _roll_out(name, version, kind, options, monitoring=monitoring, rollout=rollout)
    set_champion(name, version)
    _drop_challenger_alias(name)


def _drop_challenger_alias(name: str) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # no challenger alias: nothing to drop
        MlflowClient().delete_registered_model_alias(name, CHALLENGER)


class RolloutController:
    """Runs one rollout in the cluster (a detached actor): measures, decides, applies, publishes."""

    def __init__(self, name: str, state: Any, kind: str, metric: str, env: dict[str, str]) -> None:
        from ray_deploy.registry import use_mlflow

        os.environ.update(env)
        # explicitly: a worker process may have served another store before, and MLflow keeps its URIs globally
        use_mlflow(Settings.from_env())
        self.name, self.state, self.kind, self.metric = name, state, kind, metric
        self._lock = asyncio.Lock()

    def _monitor(self) -> Any:
        from ray import serve

        return serve.get_deployment_handle("Monitor", app_name=self.name)

    def is_final(self) -> bool:
        """Whether the rollout has ended (its controller is about to exit)."""
        return bool(self.state.final)

    async def begin(self) -> None:
        """Point ``challenger`` at the version, start measuring, and apply the first split (waits until served)."""
        from mlflow import MlflowClient

        await asyncio.to_thread(MlflowClient().set_registered_model_alias, self.name, CHALLENGER, self.state.challenger)
        await self._monitor().rollout_begin.remote(self.state.spec.gates.sensitive, self.state.started_at)
        await self._apply()
        await self._publish({}, None, None)

    async def run(self) -> None:
        """Decide every second until the rollout ends; the final section stays in the status document (the idle
        controller is removed when the next rollout starts or the deployment is deleted)."""
        while not self.state.final:
            await asyncio.sleep(TICK_S)
            try:
                async with self._lock:
                    if not self.state.final:
                        await self._tick()
            except Exception:  # a failed tick is retried at the next one; the rollout must not die of it
                log.exception("rollout of %s: a decision step failed", self.name)

    async def _tick(self) -> None:
        from ray_deploy.rollout import VersionWindow, decide

        gates = self.state.spec.gates
        observation = await self._monitor().rollout_observation.remote(False, gates.sensitive, self.state.started_at)
        champion = observation["windows"].get(self.state.champion) or VersionWindow()
        challenger = observation["windows"].get(self.state.challenger) or VersionWindow()
        now = time.time()
        decision, self.state = decide(self.state, champion, challenger, now)
        if decision == "advance":
            await self._apply()
            await self._monitor().rollout_observation.remote(True, (), self.state.started_at)
        elif decision == "promote":
            await self._finish_promoted()
        elif decision == "rollback":
            await self._finish_rolled_back()
        if decision in ("promote", "rollback"):
            await self._audit(decision, CONTROLLER, evidence=self._evidence())
        await self._publish(observation, champion, challenger)

    async def _apply(self) -> None:
        """Serve the current split (the app's configuration changes in place)."""
        rollout = {
            "mode": self.state.mode,
            "challenger": self.state.challenger,
            "kind": self.kind,
            "share": self.state.share,
            "sticky_header": self.state.spec.sticky_header,
            "rollout_id": self.state.rollout_id,
        }
        await asyncio.to_thread(switch_to_split, self.name, self.state.champion, rollout)

    async def _finish_promoted(self) -> None:
        await asyncio.to_thread(switch_to, self.name, self.state.challenger)

    async def _finish_rolled_back(self) -> None:
        await asyncio.to_thread(switch_to, self.name, self.state.champion)

    async def _publish(self, observation: dict[str, Any], champion: Any, challenger: Any) -> None:
        from ray_deploy.rollout import VersionWindow, section

        champion = champion or VersionWindow()
        challenger = challenger or VersionWindow()
        report = await self._report(observation, champion, challenger)
        doc = section(self.state, champion, challenger, time.time(), report)
        await self._monitor().set_rollout.remote(doc, not self.state.final)

    async def _report(self, observation: dict[str, Any], champion: Any, challenger: Any) -> dict[str, Any]:
        from ray_deploy.abtest import ab_report
        from ray_deploy.rollout import shadow_report

        if self.state.mode == "shadow" and observation:
            return shadow_report(
                observation["champion_outputs"], observation["challenger_outputs"], champion, challenger
            )
        if self.state.mode == "ab":
            outcomes = await self._monitor().rollout_outcomes.remote(
                self.metric, [self.state.champion, self.state.challenger], self.state.started_at
            )
            a, b = outcomes[self.state.champion], outcomes[self.state.challenger]
            if len(a) >= 2 and len(b) >= 2:
                return ab_report(self.metric, a, b)
        return {}

    # ---- manual actions (from Rollout, the magics, the side panel) ------------------------------------------

    async def pause(self, who: str = "") -> None:
        await self._manual("pause", who)

    async def resume(self, who: str = "") -> None:
        await self._manual("resume", who)

    async def approve(self, version: str | None = None, who: str = "") -> None:
        """Approve (by ``who``); a rollout that already waits for approval promotes now."""
        from ray_deploy.rollout import approve

        async with self._lock:
            if version is not None and str(version) != self.state.challenger:
                raise ConfigError(
                    f"the rollout of {self.name!r} promotes v{self.state.challenger}, not v{version}; "
                    f"approve({self.state.challenger!r})"
                )
            try:
                self.state = approve(self.state, time.time(), who)
            except ConfigError as exc:
                await self._audit("approve", who, outcome=f"failed: {exc}")
                raise
            waiting = self.state.state == "awaiting_approval"
            await self._audit("approve", who, after={"approved_by": who, "promotes_now": waiting})
            if waiting:
                self._end_by_hand("promoted", "promote", f"promoted v{self.state.challenger}, approved by {who}")
                await self._finish_promoted()
                await self._audit("promote", CONTROLLER, evidence={"approved_by": who, **self._evidence()})
            await self._publish({}, None, None)

    async def abort(self, who: str = "") -> None:
        await self._manual("abort", who)
        await self._finish_rolled_back()

    async def promote(self, who: str = "") -> bool:
        """Promote by hand; with approval required and not given, wait at ``awaiting_approval`` (returns False)."""
        from ray_deploy.rollout import request_promotion

        async with self._lock:
            allowed, self.state = request_promotion(self.state, time.time(), who)
            if not allowed:
                await self._audit("promote", who, outcome="awaiting_approval")
                await self._publish({}, None, None)
                return False
            self._end_by_hand("promoted", "promote", f"promoted by hand to v{self.state.challenger}")
            await self._finish_promoted()
            await self._audit("promote", who)
            await self._publish({}, None, None)
            return True

    async def rollback(self, who: str = "") -> None:
        async with self._lock:
            self._end_by_hand("rolled_back", "rollback", "rolled back by hand")
            await self._finish_rolled_back()
            await self._audit("rollback", who)
            await self._publish({}, None, None)

    async def _manual(self, action: str, who: str = "") -> None:
        from ray_deploy import rollout

        async with self._lock:
            before = self.state.state
            self.state = getattr(rollout, action)(self.state, time.time())
            await self._audit(action, who, before={"state": before}, after={"state": self.state.state})
            await self._publish({}, None, None)

    def _evidence(self) -> dict[str, Any]:
        """Why the rollout ended: the last step's gates and their numbers, and the reason."""
        step = self.state.history[-1] if self.state.history else {}
        return {
            "rollout_id": self.state.rollout_id,
            "step": self.state.step,
            "share": self.state.share,
            "reason": self.state.reason,
            "gates": list(step.get("gates", [])),
        }

    async def _audit(
        self,
        action: str,
        who: str,
        *,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        outcome: str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        """Record one event of this rollout (before/after: the serving version, unless given)."""
        state = self.state
        serving = state.challenger if state.state == "promoted" else state.champion
        await asyncio.to_thread(
            audit.record,
            action,
            deployment=self.name,
            before=before if before is not None else {"version": state.champion, "challenger": state.challenger},
            after=after if after is not None else {"version": serving, "state": state.state},
            outcome=outcome or ("rolled_back" if state.state == "rolled_back" and action == "rollback" else "ok"),
            evidence=evidence,
            who=who or None,
        )

    def _end_by_hand(self, state: str, decision: str, reason: str) -> None:
        if self.state.final:
            raise ConfigError(f"the rollout of {self.name!r} has already ended ({self.state.state})")
        now = time.time()
        last = {**self.state.history[-1], "ended_at": now, "decision": decision}
        self.state = replace(
            self.state, state=state, reason=reason, updated_at=now, history=(*self.state.history[:-1], last)
        )


def switch_to_split(name: str, champion: str, rollout: dict[str, Any]) -> None:
    """Serve ``champion`` with a rollout's split (the challenger deployment serves ``rollout["challenger"]``)."""
    from ray_deploy.config import DeployOptions
    from ray_deploy.deployment import Deployment, _monitoring_of, _roll_out

    config = Deployment(name)._user_config()
    _roll_out(
        name,
        champion,
        str(config.get("kind", "pyfunc")),
        DeployOptions(**config.get("options", {})),
        monitoring=_monitoring_of(config),
        rollout=rollout,
    )

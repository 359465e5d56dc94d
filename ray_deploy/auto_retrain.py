"""Auto-retrain policies: a detached actor per deployment that starts retrains on drift, on a schedule, or when
the labelled metric falls, and records every trigger and outcome.

The controller lives in the cluster (namespace ``ray_deploy_retrain``, name ``ray-deploy-auto-retrain-<name>``),
so it survives a closed notebook. The deployment's Monitor pushes drift alarm changes to it (``on_drift``); a timer
looks at the schedule and the metric. :func:`ray_deploy.retrain_trigger.decide_trigger` decides; the controller
starts the retrain (:func:`ray_deploy.retraining.retrain`, a Ray Job) and publishes its section
(``documents.AutoRetrainSection``) in the status document, with each decision and each retrain's outcome.

Example:
    >>> enable("churn", AutoRetrainSpec(on="drift", cooldown_s=600, retrain=RetrainSpec(then="canary")))
    >>> get("churn").status()["auto_retrain"]["events"][-1]["reason"]
    'drift alarm'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

from ray_deploy import audit
from ray_deploy.config import AutoRetrainSpec, Settings
from ray_deploy.retraining import FINAL, NAMESPACE

log = logging.getLogger(__name__)

TICK_S = 2.0
RESUBSCRIBE_S = 10.0
MAX_EVENTS = 50
REPEAT_SKIP_S = 60.0  # a trigger that keeps firing while skipped is recorded at most this often
CONTROLLER = "controller:auto-retrain"


def controller_name(name: str) -> str:
    """The detached actor's name for deployment ``name``."""
    return f"ray-deploy-auto-retrain-{name}"


def _controller(name: str) -> Any:
    import ray

    try:
        return ray.get_actor(controller_name(name), namespace=NAMESPACE)
    except ValueError:
        return None


def enable(name: str, spec: AutoRetrainSpec, retrain_options: dict[str, Any] | None = None) -> None:
    """Start (or replace) the auto-retrain policy of ``name``; ``retrain_options``: trainer, search_space, data."""
    import ray

    from ray_deploy.cluster import connect
    from ray_deploy.deployment import Deployment
    from ray_deploy.retraining import check_resources

    connect()
    Deployment(name).status()  # raises ModelNotFound for an unknown name
    check_resources(spec.retrain.resources_per_trial)
    replaced = stop(name)
    actor = ray.remote(AutoRetrainController).options(  # type: ignore[attr-defined]
        name=controller_name(name), namespace=NAMESPACE, lifetime="detached", num_cpus=0, max_concurrency=4
    )
    controller: Any = actor.remote(name, spec, retrain_options or {}, Settings.from_env().to_env())
    after = spec.model_dump(mode="json")
    try:
        ray.get(controller.begin.remote(), timeout=120)
    except Exception as exc:
        audit.record("auto_retrain_enable", deployment=name, after=after, outcome=f"failed: {exc}")
        raise
    controller.run.remote()
    audit.record("auto_retrain_enable", deployment=name, before={"enabled": replaced}, after=after)


def disable(name: str) -> None:
    """Stop the auto-retrain policy of ``name`` (a retrain it started goes on); no-op without one."""
    if stop(name):
        audit.record("auto_retrain_disable", deployment=name, before={"enabled": True}, after={"enabled": False})


def stop(name: str) -> bool:
    """End the policy's actor without an audit event (``delete`` and a replacing ``enable`` record their own);
    returns whether there was one."""
    import ray

    from ray_deploy.cluster import connect

    connect()
    actor = _controller(name)
    if actor is None:
        return False
    with contextlib.suppress(ray.exceptions.RayActorError):  # it died already: nothing to end
        ray.get(actor.end.remote(), timeout=60)
    ray.kill(actor)
    deadline = time.time() + 30
    while _controller(name) is not None and time.time() < deadline:
        time.sleep(0.2)
    return True


class AutoRetrainController:
    """Runs one deployment's auto-retrain policy in the cluster (a detached actor)."""

    def __init__(self, name: str, spec: AutoRetrainSpec, retrain_options: dict[str, Any], env: dict[str, str]) -> None:
        from ray_deploy.registry import use_mlflow
        from ray_deploy.retrain_trigger import TriggerState

        os.environ.update(env)
        use_mlflow(Settings.from_env())
        self.name, self.spec, self.options = name, spec, retrain_options
        self.state = TriggerState(created_at=time.time())
        self.events: list[dict[str, Any]] = []
        self.retrain_id: str | None = None
        self._subscribed_at = 0.0
        self._ended = False
        self._lock = asyncio.Lock()

    def _monitor(self) -> Any:
        from ray import serve

        return serve.get_deployment_handle("Monitor", app_name=self.name)

    async def begin(self) -> None:
        """Subscribe to drift alarms and publish the policy."""
        await self._subscribe()
        await self._publish()

    async def end(self) -> None:
        """Unsubscribe and clear the policy from the status document."""
        self._ended = True
        await self._monitor().unsubscribe.remote("auto-retrain")
        await self._monitor().set_auto_retrain.remote(None)

    async def _subscribe(self) -> None:
        await self._monitor().subscribe.remote("auto-retrain", controller_name(self.name), NAMESPACE)
        self._subscribed_at = time.time()

    async def on_drift(self, event: dict[str, Any]) -> None:
        """A drift alarm level change from the Monitor."""
        from ray_deploy.retrain_trigger import Observation

        if self.spec.on == "drift":
            await self._decide(Observation(drift_level=str(event.get("level", "ok"))))

    async def run(self) -> None:
        """The timer: schedule and performance triggers, retrain outcomes, re-subscription."""
        while not self._ended:
            await asyncio.sleep(TICK_S)
            try:
                await self._tick()
            except Exception:  # a failed tick is retried at the next one; the policy must not die of it
                log.exception("auto-retrain of %s: a tick failed", self.name)

    async def _tick(self) -> None:
        from ray_deploy.retrain_trigger import Observation

        if time.time() - self._subscribed_at >= RESUBSCRIBE_S:  # a restarted Monitor forgot its subscribers
            await self._subscribe()
        doc = await self._monitor().status.remote()
        await self._record_outcome(doc.get("retrain"))
        if doc.get("auto_retrain") != self.section():  # a restarted Monitor lost it
            await self._publish()
        if self.spec.on == "drift":
            return
        metric_name, metric = _serving_metric(doc.get("performance"))
        await self._decide(Observation(metric_name=metric_name, metric=metric))

    async def _decide(self, seen: Any) -> None:
        from dataclasses import replace

        from ray_deploy.retrain_trigger import decide_trigger
        from ray_deploy.retraining import running_lock

        async with self._lock:
            running = await asyncio.to_thread(running_lock, self.name) is not None
            seen = replace(seen, retrain_running=running)
            action, reason, self.state = decide_trigger(self.spec, self.state, seen, time.time())
            if action == "none":
                return
            if action == "skip":
                last = self.events[-1] if self.events else None
                if last and last["action"] == "skipped" and time.time() - last["t"] < REPEAT_SKIP_S:
                    return
                await self._event("skipped", reason, None)
            else:
                await self._start(reason)
            await self._publish()

    async def _start(self, reason: str) -> None:
        from ray_deploy.retraining import retrain

        retrain_spec = self.spec.retrain

        def start() -> Any:
            with audit.acting_as(CONTROLLER):  # the retrain's own events (started, finished) name the policy
                return retrain(
                    self.name,
                    **self.options,
                    **retrain_spec.model_dump(exclude={"rollout"}),
                    rollout=retrain_spec.rollout,
                    wait=False,
                    trigger=self.spec.on,
                )

        try:
            result = await asyncio.to_thread(start)
        except Exception as exc:  # recorded, and the next trigger tries again
            await self._event("skipped", f"{reason}; the retrain could not start: {exc}", None)
            return
        self.retrain_id = result.retrain_id
        await self._event("started", reason, result.retrain_id)

    async def _record_outcome(self, section: dict[str, Any] | None) -> None:
        """When the retrain this policy started ends, record how."""
        if self.retrain_id is None or section is None or section.get("retrain_id") != self.retrain_id:
            return
        if section["state"] in FINAL:
            await self._event("finished", f"{section['state']}: {section['message']}", self.retrain_id)
            self.retrain_id = None
            await self._publish()

    async def _event(self, action: str, reason: str, retrain_id: str | None) -> None:
        event = {"t": time.time(), "trigger": self.spec.on, "action": action, "retrain_id": retrain_id}
        self.events.append({**event, "reason": reason})
        del self.events[:-MAX_EVENTS]
        log.info("auto-retrain of %s: %s (%s)", self.name, action, reason)
        if action != "finished":  # how a retrain ended is the retrain's own event (retrain_finished)
            await asyncio.to_thread(
                audit.record,
                "auto_retrain_trigger",
                deployment=self.name,
                after={"retrain_id": retrain_id},
                outcome=action,
                evidence={"trigger": self.spec.on, "reason": reason},
                who=CONTROLLER,
            )

    def section(self) -> dict[str, Any]:
        """The ``documents.AutoRetrainSection`` of this policy."""
        return {
            "on": self.spec.on,
            "then": self.spec.retrain.then,
            "cooldown_s": self.spec.cooldown_s,
            "every_s": self.spec.every_s,
            "min_metric": self.spec.min_metric,
            "last_started_at": self.state.last_started_at,
            "events": list(self.events),
        }

    async def _publish(self) -> None:
        await self._monitor().set_auto_retrain.remote(self.section())


def _serving_metric(performance: dict[str, Any] | None) -> tuple[str | None, float | None]:
    """The serving version's headline labelled metric: accuracy for classifiers, rmse for regression.

    Example:
        >>> _serving_metric({"task": "classification", "metrics": {"accuracy": 0.71}})
        ('accuracy', 0.71)
    """
    if not performance or not performance.get("task"):
        return None, None
    name = "accuracy" if performance["task"] == "classification" else "rmse"
    value = (performance.get("metrics") or {}).get(name)
    return name, None if value is None else float(value)

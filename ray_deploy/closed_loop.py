"""The closed loop, told end to end on generated data: deploy → traffic → drift → retrain → gate → canary → promote.

The data (:func:`concept_data`) has four numeric features. At first the label is ``b > 0``; after the drift, traffic
comes from another region (``a`` shifted by +3) where the label is ``c > 0``, so the champion is right only by
chance there. With labels sent back as feedback, the drift alarm starts a retrain on the reference plus the
labelled traffic; the new version wins on recent traffic, passes the gate, and a canary promotes it.

:func:`run` drives the story against the connected cluster, printing each step, and returns what it observed;
``make demo`` (``ray_deploy.demo``) and the tutorial ``notebooks/04_closed_loop.ipynb`` use it.

Example:
    >>> facts = run("closed-loop", say=print)
    >>> facts["promoted_version"] == facts["retrain"]["version"]
    True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import requests

from ray_deploy.keys import auth_headers

if TYPE_CHECKING:
    from ray_deploy.config import RolloutSpec

FEATURES = ["a", "b", "c", "d"]
ROWS_PER_REQUEST = 50
WINDOW_ROWS = 200


def concept_data(rows: int, seed: int, drifted: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows and labels: before the drift ``a ~ N(0, 1)`` and label ``b > 0``; after it ``a ~ N(3, 1)``, label ``c > 0``.

    Example:
        >>> X, y = concept_data(100, seed=0, drifted=True); round(X["a"].mean())
        3
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(0, 1, (rows, 4)), columns=FEATURES)
    if drifted:
        frame["a"] += 3.0
    labels = ((frame["c"] if drifted else frame["b"]) > 0).to_numpy().astype(int)
    return frame, labels


def champion_model(X: pd.DataFrame, y: np.ndarray) -> Any:
    """The first model: a random forest trained before the drift."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0).fit(X, y)


def challenger_space() -> dict[str, Any]:
    """Tune's search space for the retrain: forests of at most twice the champion's 30 trees.

    It keeps the trials quick and the challenger's latency near the champion's, which the canary's latency gate
    compares: the default forest space reaches 200 trees, and such a forest predicts 50 rows ~5x slower than the
    champion here (11 against 2 ms).

    Example:
        >>> sorted(challenger_space())
        ['max_depth', 'max_features', 'min_samples_leaf', 'n_estimators']
    """
    from ray import tune

    return {
        "n_estimators": tune.choice([30, 60]),
        "max_depth": tune.choice([6, 8, None]),
        "min_samples_leaf": tune.randint(1, 10),
        "max_features": tune.choice(["sqrt", 0.5]),
    }


def canary_spec() -> RolloutSpec:
    """The canary that rolls the retrained version out: 50% then 100%, 10 s each, judged on 10 requests a step.

    The label moved, so predictions must shift (``max_prediction_shift=1.0`` turns that gate off). In the first
    step the new replica shares the cores with the retrain's ending Tune trials and the traffic: its p99 measured
    1.5-2.9x the champion's here, and one of its first ten requests 51 ms against the champion's 12 ms. So p99
    may be 3x and +50 ms the champion's: only a version that is slower for real rolls back.

    Example:
        >>> canary_spec().gates.p99_slack_ms
        50.0
    """
    from ray_deploy.config import GateSpec, RolloutSpec

    gates = GateSpec(min_requests=10, max_prediction_shift=1.0, max_p99_ratio=3.0, p99_slack_ms=50)
    return RolloutSpec(steps=(0.5, 1.0), step_s=10, gates=gates)


class Traffic:
    """Requests of 50 rows over HTTP with their labels sent back as feedback, in a background thread (bounded).

    Example:
        >>> with Traffic(dep.url, drifted=True, max_requests=200) as traffic:
        ...     time.sleep(10)
        >>> traffic.sent, traffic.failed
        (200, 0)
    """

    def __init__(self, url: str, drifted: bool, max_requests: int, pause_s: float = 0.05, seed: int = 100) -> None:
        self.url, self.drifted, self.max_requests, self.pause_s = url, drifted, max_requests, pause_s
        self.sent = self.failed = 0
        self.correct = self.labelled = 0
        self._seed = seed
        self._headers = auth_headers()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="closed-loop-traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def send_one(self) -> None:
        """One request and its feedback."""
        frame, labels = concept_data(ROWS_PER_REQUEST, seed=self._seed + self.sent, drifted=self.drifted)
        body = {"dataframe_split": {"columns": FEATURES, "data": frame.to_numpy().tolist()}}
        try:
            answer = requests.post(f"{self.url}/predict", json=body, headers=self._headers, timeout=30)
            answer.raise_for_status()
            doc = answer.json()
            feedback = {"request_ids": [doc["request_id"]], "labels": [labels.tolist()]}
            requests.post(f"{self.url}/feedback", json=feedback, headers=self._headers, timeout=30).raise_for_status()
            self.correct += int((np.asarray(doc["predictions"]) == labels).sum())
            self.labelled += len(labels)
        except requests.RequestException:
            self.failed += 1
        self.sent += 1

    def accuracy(self) -> float | None:
        """Accuracy of the answers so far (against the labels sent back)."""
        return None if not self.labelled else self.correct / self.labelled

    def _loop(self) -> None:
        while not self._stop.is_set() and self.sent < self.max_requests:
            self.send_one()
            self._stop.wait(self.pause_s)


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``check`` every 0.5 s until it returns something truthy (returned), or raise ``TimeoutError`` naming
    ``what`` after ``timeout_s``.

    Example:
        >>> wait_until(lambda: dep.status().get("rollout"), 60, "the rollout to start")
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"the closed loop timed out after {timeout_s:g} s waiting for {what}")


def run(
    name: str = "closed-loop",
    say: Callable[[str], Any] = print,
    num_samples: int = 4,
    cpus_per_trial: float = 0.5,
    timeout_s: float = 240.0,
) -> dict[str, Any]:
    """Tell the whole story on the connected cluster; returns what happened (sections, versions, accuracies).

    Example:
        >>> run("closed-loop")["retrain"]["gate"]["passed"]
        True
    """
    import ray_deploy

    started = time.perf_counter()

    def step(text: str) -> None:
        say(f"[{time.perf_counter() - started:5.1f} s] {text}")

    _start_afresh(name)
    X, y = concept_data(2000, seed=1)
    model = champion_model(X, y)
    dep = ray_deploy.deploy(
        model,
        name,
        sample_input=X[:5],
        reference=X,
        reference_labels=y,
        drift={"window_rows": WINDOW_ROWS, "min_rows": 100, "raise_after": 2, "clear_after": 3},
        num_cpus=0.25,
        show_progress=False,
    )
    first = dep.version
    step(f"1. deployed {name} version {first} (a random forest; reference: 2,000 labelled training rows)")
    dep.auto_retrain(
        on="drift",
        then="canary",
        cooldown_s=3600,
        num_samples=num_samples,
        resources_per_trial={"cpu": cpus_per_trial},
        max_regression=0.05,
        search_space=challenger_space(),
        rollout=canary_spec(),
    )
    step("2. auto-retrain on: a drift alarm retrains (Ray Tune), the gate judges, a canary rolls the winner out")
    with Traffic(dep.url, drifted=False, max_requests=2 * WINDOW_ROWS // ROWS_PER_REQUEST) as before:
        wait_until(lambda: before.sent >= before.max_requests, 60, "the first traffic")
    before_accuracy = before.accuracy() or 0.0
    step(f"3. {before.sent} requests like the training data: accuracy {before_accuracy:.2f}, drift stays ok")
    facts: dict[str, Any] = {"first_version": first, "accuracy_before_drift": before_accuracy}
    with Traffic(dep.url, drifted=True, max_requests=3000, pause_s=0.05, seed=10_000) as drifted:
        wait_until(lambda: drift_state(dep) == "alarm", 90, "the drift alarm")
        facts["accuracy_on_drift"] = drifted.accuracy()
        step(
            f"4. traffic drifted (feature a moved +3, the label now follows c): accuracy {drifted.accuracy():.2f};"
            f" the drift alarm went off after {drifted.sent} labelled requests"
        )
        section = wait_until(lambda: dep.status().get("retrain") or {}, 60, "the retrain to start")
        step(f"5. the alarm started retrain {section['retrain_id']} as a Ray Job ({num_samples} Tune trials)")
        retrain = wait_until(lambda: _final_retrain(dep), timeout_s, "the retrain to end")
        facts["retrain"] = retrain
        best = next((t for t in retrain["trials"] if t["trial_id"] == retrain["best_trial"]), None)
        if best is not None:
            step(f"6. best trial {best['trial_id']}: {retrain['metric']} {best['metric']:.3f} with {best['config']}")
        gate = retrain["gate"] or {}
        step(f"7. gate {'passed' if gate.get('passed') else 'failed'}: {gate.get('reason', retrain['message'])}")
        if retrain["state"] != "succeeded":
            step(f"   retrain {retrain['state']}: {retrain['message']}")
            return facts
        rollout = wait_until(lambda: _final_rollout(dep, retrain["version"]), timeout_s, "the canary to end")
        facts["rollout"] = rollout
        steps = " → ".join(f"{h['share']:.0%} {h['decision']}" for h in rollout["history"])
        why = f" ({rollout.get('message')})" if rollout["state"] != "promoted" else ""
        step(f"8. canary of version {rollout['challenger']}: {steps}; {rollout['state']}{why}")
        served_from = drifted.sent
        wait_until(lambda: drifted.sent >= served_from + 5, 60, "traffic on the new version")
    facts["promoted_version"] = dep.version if rollout["state"] == "promoted" else None
    after = Traffic(dep.url, drifted=True, max_requests=10, pause_s=0.0, seed=50_000)
    for _ in range(after.max_requests):
        after.send_one()
    facts["accuracy_after"] = after.accuracy()
    facts["failed_requests"] = before.failed + drifted.failed + after.failed
    step(
        f"9. version {dep.version} serves: accuracy on drifted traffic {facts['accuracy_on_drift']:.2f} → "
        f"{facts['accuracy_after']:.2f}; failed requests along the way: {facts['failed_requests']}"
    )
    facts["seconds"] = time.perf_counter() - started
    return facts


def _start_afresh(name: str) -> None:
    """Delete an earlier run's deployment and its captured traffic, so a rerun tells the same story: a retrain reads
    every labelled row captured under the name, and an earlier run's drifted rows would outweigh the reference."""
    import ray_deploy
    from ray_deploy.capture_store import CaptureStore
    from ray_deploy.config import Settings

    if name in {d["name"] for d in ray_deploy.list_deployments()}:
        ray_deploy.delete(name)
    CaptureStore(Settings.from_env().capture_uri, name).clear()


def drift_state(dep: Any) -> str | None:
    """The deployment's drift state (ok, warning, alarm, ...), after the Monitor processed what it holds."""
    from ray_deploy.errors import NotReady

    try:
        dep.drift_report()  # has the Monitor process what it holds
    except NotReady:  # no window closed yet
        return None
    return (dep.status().get("drift") or {}).get("state")


def _final_retrain(dep: Any) -> dict[str, Any] | None:
    from ray_deploy.retraining import FINAL, RetrainResult

    section = dep.status().get("retrain")
    if not section:
        return None
    section = RetrainResult(dep.name, section["retrain_id"]).status()  # also sees a job that died
    return section if section["state"] in FINAL else None


def _final_rollout(dep: Any, version: str) -> dict[str, Any] | None:
    section = dep.status().get("rollout")
    if not section or section["challenger"] != version:
        return None
    return section if section["state"] in ("promoted", "rolled_back", "aborted", "finished") else None

"""Benchmark retrain tuning: Ray Tune's overhead per trial, and ASHA against FIFO on the same search space.

Two measurements in one run, printed as one Markdown table:

1. Overhead: the same K configs of a small torch MLP trained by ``ray_deploy.trainers.builtin_trainer`` in a plain
   Python loop, and through ``ray_deploy.tuning.run_tune`` one trial at a time (``max_concurrent_trials=1``, FIFO,
   one CPU per trial, a checkpoint per epoch): seconds per trial both ways, the overhead per trial in ms and the
   ratio, for the whole run divided by K and for each further trial (a K-trial run less a one-trial run, over
   K - 1), and the fixed cost of a run (Tune's start and end).
2. Scheduling: ``run_tune`` with ASHA and with FIFO on the same search space and seed (an MLP on a generated data
   set, lr from 1e-5 to 1e-1): wall time until a trial first reaches the target validation accuracy, total wall
   time, trials stopped early and the best accuracy.

Run it directly (``make bench-tune``):

    python bench/tune.py                  # K=5 overhead configs, 8 scheduled trials per scheduler
    python bench/tune.py --quick          # a fast smoke run
    python bench/tune.py --json tune.json # also write the figures as JSON
    python bench/tune.py --stop-cluster   # stop the local cluster afterwards

It uses the cluster of ``ray_deploy.connect()`` (set ``RAY_DEPLOY_HOME`` and the ``RAY_DEPLOY_*_PORT`` variables to
run beside another local cluster) and writes Tune's results under a temporary folder it removes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch
from ray import tune
from sklearn.datasets import make_classification

import ray_deploy
from ray_deploy.trainers import LABEL, builtin_trainer
from ray_deploy.tuning import run_tune

TRIAL_CPUS = 1.0
OVERHEAD_EPOCHS = 5
SCHEDULED_EPOCHS = 15
TARGET_ACCURACY = 0.85


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def quiet() -> contextlib.AbstractContextManager[Any]:
    """Tune's experiment banner goes to stderr, so stdout holds only the table."""
    return contextlib.redirect_stdout(sys.stderr)


class MLP(torch.nn.Module):
    """The benchmark model: features → 64 → 64 → 2 with ReLUs."""

    def __init__(self, inputs: int) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(inputs, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def data(rows: int, columns: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A generated binary classification set, 70/30 train/valid."""
    x, y = make_classification(
        n_samples=rows, n_features=columns, n_informative=12, class_sep=0.8, flip_y=0.03, random_state=11
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(columns)]).assign(**{LABEL: y})
    cut = int(rows * 0.7)
    return frame[:cut].reset_index(drop=True), frame[cut:].reset_index(drop=True)


@dataclass
class Overhead:
    """Measurement 1: the same configs in a plain loop and through Tune, one at a time."""

    configs: int
    epochs: int
    plain_s_per_trial: float
    tune_s_per_trial: float
    overhead_ms_per_trial: float
    ratio: float
    run_fixed_s: float
    """A one-trial run's wall time less the trial's training: Tune's start and end."""
    marginal_s_per_trial: float
    """(run of K trials - run of 1 trial) / (K - 1): what each further trial costs."""
    marginal_overhead_ms: float
    marginal_ratio: float


@dataclass
class Scheduled:
    """Measurement 2: one scheduler's run."""

    scheduler: str
    trials: int
    time_to_target_s: float | None
    total_s: float
    stopped_early: int
    best_accuracy: float | None
    epochs_run: int


class _FirstHit(tune.Callback):
    """Records when any trial first reports an accuracy at or above the target."""

    def __init__(self, target: float, started: float) -> None:
        self.target, self.started = target, started
        self.hit_s: float | None = None

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any) -> None:
        if self.hit_s is None and result.get("accuracy", -math.inf) >= self.target:
            self.hit_s = time.monotonic() - self.started


def _tune_seconds(
    trainer: Any,
    lrs: list[float],
    train: pd.DataFrame,
    valid: pd.DataFrame,
    storage: str,
    epochs: int = OVERHEAD_EPOCHS,
) -> float:
    """Wall seconds of one run_tune over ``lrs``, one trial at a time."""
    started = time.perf_counter()
    with quiet():
        outcome = run_tune(
            trainer,
            {"lr": tune.grid_search(lrs), "epochs": epochs},
            train,
            valid,
            metric="accuracy",
            mode="max",
            num_samples=1,
            scheduler="fifo",
            resources_per_trial={"cpu": TRIAL_CPUS},
            max_concurrent_trials=1,
            storage_path=storage,
            name=f"overhead-{len(lrs)}x{epochs}",
        )
    elapsed = time.perf_counter() - started
    if outcome.errors:
        log(f"overhead: {outcome.errors} trial(s) failed: {[t['error'] for t in outcome.trials if t['error']]}")
    return elapsed


def measure_overhead(configs: int, rows: int, storage: str) -> Overhead:
    train, valid = data(rows)
    trainer = builtin_trainer(MLP(train.shape[1] - 1), task="classification", input_kind="array")
    lrs = [float(v) for v in np.geomspace(1e-3, 3e-2, configs)]
    torch.set_num_threads(int(TRIAL_CPUS))  # as in a one-CPU trial (Ray sets OMP_NUM_THREADS to its CPUs)
    list(trainer({"lr": lrs[0], "epochs": 1}, train, valid))  # warm torch up once, outside both timings
    log(f"overhead: {configs} configs x {OVERHEAD_EPOCHS} epochs in a plain loop")
    started = time.perf_counter()
    for lr in lrs:
        for _ in trainer({"lr": lr, "epochs": OVERHEAD_EPOCHS}, train, valid):
            pass
    plain = (time.perf_counter() - started) / configs
    log("warm-up: one untimed run_tune, so no timing below pays for the first worker's start and imports")
    _tune_seconds(trainer, lrs[:1], train, valid, storage, epochs=1)
    log("overhead: run_tune with the first config alone (the fixed cost of a run)")
    one = _tune_seconds(trainer, lrs[:1], train, valid, storage)
    log(f"overhead: run_tune with all {configs} configs, one trial at a time")
    every = _tune_seconds(trainer, lrs, train, valid, storage)
    marginal = (every - one) / (configs - 1)
    return Overhead(
        configs=configs,
        epochs=OVERHEAD_EPOCHS,
        plain_s_per_trial=plain,
        tune_s_per_trial=every / configs,
        overhead_ms_per_trial=(every / configs - plain) * 1000,
        ratio=every / configs / plain,
        run_fixed_s=one - plain,
        marginal_s_per_trial=marginal,
        marginal_overhead_ms=(marginal - plain) * 1000,
        marginal_ratio=marginal / plain,
    )


def measure_scheduler(scheduler: str, trials: int, rows: int, target: float, storage: str) -> Scheduled:
    train, valid = data(rows)
    trainer = builtin_trainer(MLP(train.shape[1] - 1), task="classification", input_kind="array")
    space = {"lr": tune.loguniform(1e-5, 1e-1), "batch_size": tune.choice([32, 64, 128]), "epochs": SCHEDULED_EPOCHS}
    log(f"{scheduler}: {trials} trials x up to {SCHEDULED_EPOCHS} epochs")
    started = time.monotonic()
    first = _FirstHit(target, started)
    with quiet():
        outcome = run_tune(
            trainer,
            space,
            train,
            valid,
            metric="accuracy",
            mode="max",
            num_samples=trials,
            scheduler=scheduler,
            resources_per_trial={"cpu": TRIAL_CPUS},
            max_iterations=SCHEDULED_EPOCHS,
            callbacks=[first],
            storage_path=storage,
            name=scheduler,
            seed=0,
        )
    total = time.monotonic() - started
    best = outcome.best_metrics["accuracy"] if outcome.best_metrics else None
    return Scheduled(
        scheduler=scheduler.upper(),
        trials=len(outcome.trials),
        time_to_target_s=first.hit_s,
        total_s=total,
        stopped_early=sum(t["stopped_early"] for t in outcome.trials),
        best_accuracy=best,
        epochs_run=sum(t["iterations"] for t in outcome.trials),
    )


def seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} s"


def markdown(overhead: Overhead, scheduled: list[Scheduled], target: float, cpus: float) -> str:
    lines = [
        f"Tune overhead ({overhead.configs} configs x {overhead.epochs} epochs of a torch MLP, one trial at a time, "
        f"{TRIAL_CPUS:g} CPU each, a checkpoint per epoch; cluster {cpus:g} CPU):",
        "",
        "| way | s per trial | overhead per trial | ratio |",
        "|---|---:|---:|---:|",
        f"| plain Python loop | {overhead.plain_s_per_trial:.3f} | — | 1.00× |",
        f"| run_tune, whole run / K | {overhead.tune_s_per_trial:.3f} | {overhead.overhead_ms_per_trial:.0f} ms | "
        f"{overhead.ratio:.2f}× |",
        f"| run_tune, each further trial | {overhead.marginal_s_per_trial:.3f} | "
        f"{overhead.marginal_overhead_ms:.0f} ms | {overhead.marginal_ratio:.2f}× |",
        "",
        f"Fixed cost of a run_tune call (one trial's run less its training): {overhead.run_fixed_s:.1f} s.",
        "",
        f"ASHA vs FIFO (same search space and seed, up to {SCHEDULED_EPOCHS} epochs per trial, target accuracy "
        f"{target:g}):",
        "",
        "| scheduler | trials | time to target | total wall time | stopped early | epochs run | best accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scheduled:
        best = "—" if s.best_accuracy is None else f"{s.best_accuracy:.3f}"
        lines.append(
            f"| {s.scheduler} | {s.trials} | {seconds(s.time_to_target_s)} | {s.total_s:.1f} s | {s.stopped_early} | "
            f"{s.epochs_run} | {best} |"
        )
    fifo = next((s for s in scheduled if s.scheduler == "FIFO"), None)
    asha = next((s for s in scheduled if s.scheduler == "ASHA"), None)
    if fifo and asha:
        lines.append(
            f"| ASHA / FIFO | | {ratio(asha.time_to_target_s, fifo.time_to_target_s)} | "
            f"{ratio(asha.total_s, fifo.total_s)} | | {ratio(asha.epochs_run, fifo.epochs_run)} | |"
        )
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, help="overhead configs, at least 2 (default 5; --quick: 3)")
    parser.add_argument("--trials", type=int, help="trials per scheduler (default 8; --quick: 4)")
    parser.add_argument("--rows", type=int, help="rows of the generated data set (default 2000; --quick: 800)")
    parser.add_argument("--target", type=float, default=TARGET_ACCURACY, help="validation accuracy to reach")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--stop-cluster", action="store_true", help="stop the local cluster at the end")
    args = parser.parse_args(argv)
    args.configs = max(2, args.configs or (3 if args.quick else 5))
    args.trials = args.trials or (4 if args.quick else 8)
    args.rows = args.rows or (800 if args.quick else 2000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = ray_deploy.connect()
    log(f"cluster {info.address}, {info.cpus:g} CPU")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-tune-") as storage:
            overhead = measure_overhead(args.configs, args.rows, storage)
            scheduled = [
                measure_scheduler(name, args.trials, args.rows, args.target, storage) for name in ("asha", "fifo")
            ]
        print(markdown(overhead, scheduled, args.target, info.cpus), flush=True)
        if args.json:
            doc = {
                "cpus": info.cpus,
                "machine_cpus": os.cpu_count(),
                "ray": ray.__version__,
                "torch": torch.__version__,
                "target": args.target,
                "overhead": asdict(overhead),
                "scheduled": [asdict(s) for s in scheduled],
            }
            args.json.write_text(json.dumps(doc, indent=2))
            log(f"wrote {args.json}")
    finally:
        if args.stop_cluster:
            log("stopping the local cluster")
            ray_deploy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

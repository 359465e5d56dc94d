"""Benchmark SHAP explanations: single-process shap (explain_model) against explain_parallel on the Ray cluster.

Both explain the same rows of a scikit-learn pipeline (scaler + one-hot encoder + logistic regression over
eight columns, one of them a string) with the permutation explainer on ``predict_proba``, so the work is
compute-bound model calls. The parallel run splits the rows into as many chunks as the cluster has CPUs (one
Ray task per chunk, one CPU each). It prints one Markdown table: seconds, rows/s, speedup over single-process
and parallel efficiency (speedup / cores), and checks that both give the same values.

    python bench/explain.py                     # 400 rows
    python bench/explain.py --quick             # a fast smoke run (40 rows)
    python bench/explain.py --rows 1000 --json bench-explain.json
    python bench/explain.py --stop-cluster      # stop the local cluster afterwards

It uses the cluster of ``ray_deploy.connect()`` (set ``RAY_DEPLOY_HOME`` and the ``RAY_DEPLOY_*_PORT`` variables
to run beside another local cluster); it starts no deployments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import shap
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import ray_deploy
from ray_deploy.explain import explain_model, explain_parallel

NUMERIC = [f"n{i}" for i in range(7)]
BACKGROUND_ROWS = 30


@dataclass
class Result:
    """The figures of one way of explaining the rows."""

    method: str
    cores: int
    rows: int
    seconds: float
    rows_per_s: float
    speedup: float | None = None
    efficiency: float | None = None


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def data(rows: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, len(NUMERIC))), columns=NUMERIC)
    frame["plan"] = rng.choice(["basic", "pro", "team", "edu"], rows)
    labels = (frame["n0"] + frame["n1"] * frame["n2"] + (frame["plan"] == "pro") > 0.5).to_numpy().astype(int)
    return frame, labels


def model() -> Pipeline:
    frame, labels = data(500)
    features = ColumnTransformer([("num", StandardScaler(), NUMERIC), ("cat", OneHotEncoder(), ["plan"])])
    return Pipeline([("features", features), ("clf", LogisticRegression(max_iter=500))]).fit(frame, labels)


def timed(method: str, cores: int, rows: int, run: Any) -> tuple[Result, Any]:
    start = time.perf_counter()
    expl = run()
    seconds = time.perf_counter() - start
    return Result(method, cores, rows, seconds, rows / seconds), expl


def markdown(results: list[Result], rows: int, cpus: float) -> str:
    lines = [
        f"- Model: pipeline (StandardScaler on {len(NUMERIC)} numeric columns + OneHotEncoder on a string column "
        f"+ LogisticRegression), `predict_proba`, permutation explainer, background {BACKGROUND_ROWS} rows.",
        f"- {rows} rows; single-process is `explain_model` in this process; parallel is `explain_parallel` with "
        f"one chunk per cluster CPU ({cpus:g}), one CPU per Ray task. Machine: {os.cpu_count()} CPUs; "
        f"ray {ray.__version__}, shap {shap.__version__}.",
        "- Speedup is over single-process; efficiency = speedup / cores.",
        "",
        "| method | cores | rows | seconds | rows/s | speedup | efficiency |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        speedup = "—" if r.speedup is None else f"{r.speedup:.2f}×"
        efficiency = "—" if r.efficiency is None else f"{r.efficiency:.0%}"
        lines.append(
            f"| {r.method} | {r.cores} | {r.rows} | {r.seconds:.2f} | {r.rows_per_s:.1f} | {speedup} | {efficiency} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="rows to explain (default 400; --quick: 40)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--stop-cluster", action="store_true", help="stop the local cluster at the end")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = args.rows or (40 if args.quick else 400)
    info = ray_deploy.connect()
    log(f"cluster {info.address}, {info.cpus:g} CPU")
    try:
        return run(args, rows, info)
    finally:
        if args.stop_cluster:
            log("stopping the local cluster")
            ray_deploy.shutdown()


def run(args: argparse.Namespace, rows: int, info: ray_deploy.ClusterInfo) -> int:
    """Explain the same rows both ways, check they agree, print (and write) the table."""
    cores = max(1, int(info.cpus))
    pipeline = model()
    frame, _ = data(rows)
    kwargs: dict[str, Any] = {
        "predict_method": "predict_proba",
        "explainer": "permutation",
        "background": frame[:BACKGROUND_ROWS],
    }
    log(f"single-process: {rows} rows")
    single, expected = timed(
        "single-process shap", 1, rows, lambda: explain_model(pipeline, "sklearn", frame, **kwargs)
    )
    log(f"explain_parallel: {rows} rows in {cores} chunks")
    parallel, got = timed(
        "explain_parallel (Ray tasks)",
        cores,
        rows,
        lambda: explain_parallel(pipeline, "sklearn", frame, chunks=cores, num_cpus=1, **kwargs),
    )
    if not np.allclose(got.values, expected.values, rtol=1e-6, atol=1e-9):
        raise RuntimeError("explain_parallel's values differ from explain_model's")
    parallel.speedup = single.seconds / parallel.seconds
    parallel.efficiency = parallel.speedup / cores
    single.speedup, single.efficiency = 1.0, 1.0
    results = [single, parallel]
    print(markdown(results, rows, info.cpus), flush=True)
    if args.json:
        doc = {"rows": rows, "cpus": os.cpu_count(), "cluster_cpus": info.cpus, "results": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(doc, indent=2))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure drift alarms: the false-alarm rate on undrifted traffic, and how fast a real shift is caught.

The same code path as the Monitor (``ReferenceProfile``, ``WindowSummary``, ``compare`` with the domain classifier,
``next_alarm``) with the default :class:`DriftSpec` (windows of 500 rows, alpha 0.01 after Benjamini-Hochberg,
effect-size thresholds, alarm after 2 drifted windows, cleared after 3 clean ones). The data: 10 numeric features
(two of them correlated) and one categorical, a 20,000-row reference, and windows drawn from the same
distribution; then streams where one feature moves by half a standard deviation.

    python bench/drift_alarms.py                 # 300 undrifted windows, 20 shifted streams
    python bench/drift_alarms.py --windows 50 --streams 5
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

from ray_deploy.alarms import AlarmState, next_alarm
from ray_deploy.config import DriftSpec
from ray_deploy.drift import ReferenceProfile, WindowSummary, compare


def data(rows: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    """Ten numeric features (x0 and x1 correlated 0.8), one categorical; ``x3`` moved by ``shift`` std."""
    values = rng.normal(0, 1, (rows, 10))
    values[:, 1] = 0.8 * values[:, 0] + 0.6 * values[:, 1]
    values[:, 3] += shift
    frame = pd.DataFrame(values, columns=[f"x{i}" for i in range(10)])
    frame["plan"] = rng.choice(["basic", "pro", "team", "enterprise"], rows, p=[0.4, 0.3, 0.2, 0.1])
    return frame


def undrifted(profile: ReferenceProfile, spec: DriftSpec, windows: int, rng: np.random.Generator) -> dict[str, float]:
    state, drifted, warnings, alarms, false_features = AlarmState(), 0, 0, 0, 0
    started = time.perf_counter()
    for k in range(windows):
        window = WindowSummary(profile, spec, started_at=float(k), seed=k)
        window.add(data(spec.window_rows, rng), None, float(k))
        result = compare(profile, window, spec, seed=k)
        drifted += result.drifted
        false_features += len(result.drifted_features)
        previous, state = state, next_alarm(state, result.drifted, spec)
        warnings += state.level == "warning" and previous.level == "ok"
        alarms += state.level == "alarm" and previous.level != "alarm"
    seconds = time.perf_counter() - started
    return {
        "windows": windows,
        "drifted windows": drifted,
        "drifted-window rate": drifted / windows,
        "features flagged": false_features,
        "warnings raised": warnings,
        "alarms raised": alarms,
        "seconds per window": seconds / windows,
    }


def shifted(profile: ReferenceProfile, spec: DriftSpec, streams: int, rng: np.random.Generator) -> dict[str, float]:
    to_alarm: list[int] = []
    only_x3 = 0
    for s in range(streams):
        state = AlarmState()
        for k in range(1, 21):
            window = WindowSummary(profile, spec, started_at=float(k), seed=s * 100 + k)
            window.add(data(spec.window_rows, rng, shift=0.5), None, float(k))
            result = compare(profile, window, spec, seed=k)
            state = next_alarm(state, result.drifted, spec)
            if state.level == "alarm":
                to_alarm.append(k)
                only_x3 += result.drifted_features == ["x3"]
                break
    return {
        "streams": streams,
        "streams alarmed within 20 windows": len(to_alarm),
        "windows to alarm (median)": float(np.median(to_alarm)) if to_alarm else float("nan"),
        "windows to alarm (max)": float(max(to_alarm)) if to_alarm else float("nan"),
        "alarms naming only x3": only_x3,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--windows", type=int, default=300, help="undrifted windows (default 300)")
    parser.add_argument("--streams", type=int, default=20, help="shifted streams (default 20)")
    args = parser.parse_args(argv)
    spec = DriftSpec()
    rng = np.random.default_rng(0)
    profile = ReferenceProfile.build(data(20_000, rng), None, spec)
    rows = {**undrifted(profile, spec, args.windows, rng), **shifted(profile, spec, args.streams, rng)}
    print(
        f"Default DriftSpec: windows of {spec.window_rows} rows, alpha {spec.alpha}, raise after {spec.raise_after}, "
        f"clear after {spec.clear_after}; 11 features + domain classifier.\n"
    )
    print("| measure | value |\n|---|--:|")
    for name, value in rows.items():
        shown = f"{value:.4f}" if isinstance(value, float) and not float(value).is_integer() else f"{value:g}"
        print(f"| {name} | {shown} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

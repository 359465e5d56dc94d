"""The evaluation gate of a retrain: may the new version serve? A pure function of scores, no I/O.

The retrain job scores the champion and the new version on the same rows no trial trained on: ``recent`` (the
newest labelled captured rows: what the deployment sees now) and ``held_out`` (a random share of the reference and
caller's rows: what it was built for). The champion usually trained on the reference, so it has the advantage there.
With :data:`MIN_ROWS` or more recent rows, the new version passes when it scores at least ``min_improvement``
better than the champion on them and no more than ``max_regression`` worse on the held-out rows. Without recent
rows (a retrain on the reference or the caller's data) it must score ``min_improvement`` better on the held-out rows.
Scores are signed by ``mode`` (for rmse lower is better). With too few rows to compare on, the gate fails: nothing
shows the new version is better.

Example:
    >>> gate = evaluation_gate("accuracy", "max", [("held_out", 120, 0.95, 0.94), ("recent", 60, 0.52, 0.91)])
    >>> gate["passed"], gate["reason"].split("; ")[0]
    (True, 'accuracy 0.910 vs champion 0.520 on 60 recent labelled rows (+0.390)')
"""

from __future__ import annotations

import math
from typing import Any, Literal

MIN_ROWS = 20
_NAMES = {"held_out": "held-out", "recent": "recent labelled"}


def signed_delta(champion: float | None, challenger: float | None, mode: Literal["max", "min"]) -> float | None:
    """challenger - champion, positive when the challenger is better (for ``mode="min"`` the sign flips).

    Example:
        >>> signed_delta(0.30, 0.25, "min")
        0.04999999999999999
    """
    if challenger is None or not math.isfinite(challenger):
        return None
    if champion is None or not math.isfinite(champion):
        return None
    return challenger - champion if mode == "max" else champion - challenger


def _line(metric: str, dataset: str, n: int, champion: float | None, challenger: float, delta: float | None) -> str:
    where = f"on {n} {_NAMES.get(dataset, dataset)} rows"
    if champion is None or delta is None:
        return f"{metric} {challenger:.3f} {where}; the champion could not be scored"
    return f"{metric} {challenger:.3f} vs champion {champion:.3f} {where} ({delta:+.3f})"


def evaluation_gate(
    metric: str,
    mode: Literal["max", "min"],
    scores: list[tuple[str, int, float | None, float | None]],
    min_improvement: float = 0.0,
    max_regression: float = 0.02,
) -> dict[str, Any]:
    """The gate's verdict (a ``documents.RetrainGate`` dict) from ``(dataset, rows, champion, challenger)`` scores.

    A champion that could not be scored (None) counts as beaten when the challenger has a score: the new version
    replaces a model that cannot answer.

    Example:
        >>> evaluation_gate("rmse", "min", [("held_out", 200, 1.0, 1.3)])["reason"]
        'rmse 1.300 vs champion 1.000 on 200 held-out rows (-0.300): not better by 0'
    """
    rows: list[dict[str, Any]] = []
    usable: dict[str, tuple[str, float | None]] = {}
    for dataset, n, champion, challenger in scores:
        delta = signed_delta(champion, challenger, mode)
        rows.append(
            {"dataset": dataset, "rows": int(n), "champion": champion, "challenger": challenger, "delta": delta}
        )
        if n >= MIN_ROWS and challenger is not None:
            beaten = champion is None  # a champion that cannot answer loses
            usable[dataset] = (
                _line(metric, dataset, n, champion, challenger, delta),
                float("inf") if beaten else delta,
            )
    # what must improve (recent when there is enough of it, else held-out), and what must merely not regress
    improve, guard = ("recent", "held_out") if "recent" in usable else ("held_out", None)
    failures: list[str] = []
    evidence: list[str] = []
    if improve not in usable:
        failures.append(f"no data set has {MIN_ROWS}+ labelled rows to compare on; send feedback labels or pass data=")
    else:
        line, delta = usable[improve]
        if delta is None or delta < min_improvement:
            failures.append(f"{line}: not better by {min_improvement:g}")
        else:
            evidence.append(line)
    if guard is not None and guard in usable:
        line, delta = usable[guard]
        if delta is None or delta < -max_regression:
            failures.append(f"{line}: worse by more than {max_regression:g}")
        else:
            evidence.append(line)
    passed = not failures
    return {
        "passed": passed,
        "metric": metric,
        "min_improvement": float(min_improvement),
        "max_regression": float(max_regression),
        "rows": rows,
        "reason": "; ".join(evidence if passed else failures),
    }

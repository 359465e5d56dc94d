"""The statistics of an A/B test: is arm B's metric different from arm A's, how sure, and how many samples it takes.

Binary outcomes (conversion, correct-or-not per request: every sample 0/1 or a bool) use the two-proportion
z-test (pooled variance) and the Newcombe hybrid score interval (from two Wilson intervals) for the difference.
Continuous outcomes use Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``) and its confidence interval.
The sample size for the observed effect uses the usual normal approximations. Pure: samples in, numbers out.

Example:
    >>> report = ab_report("conversion", [0] * 900 + [1] * 100, [0] * 850 + [1] * 150)
    >>> round(report["difference"], 3), report["significant"]
    (0.05, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from ray_deploy.errors import ConfigError

__all__ = ["ab_report", "samples_needed"]

Kind = Literal["auto", "binary", "continuous"]


def _is_binary(values: Sequence[float]) -> bool:
    return all(v == 0 or v == 1 for v in values)


def _wilson(successes: float, n: int, z: float) -> tuple[float, float]:
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def samples_needed(
    mean_a: float, mean_b: float, var_a: float, var_b: float, *, alpha: float = 0.05, power: float = 0.8, binary: bool
) -> float | None:
    """Samples per arm for a two-sided test at ``alpha`` to detect ``mean_b - mean_a`` with ``power``.

    Binary: ``(z_a * sqrt(2 p(1-p)) + z_b * sqrt(pa(1-pa) + pb(1-pb)))^2 / d^2`` with ``p`` the average rate.
    Continuous: ``(z_a + z_b)^2 (var_a + var_b) / d^2``. None when the difference is 0.

    Example:
        >>> samples_needed(0.10, 0.15, 0.09, 0.1275, binary=True)
        686.0
    """
    from scipy.stats import norm

    d = mean_b - mean_a
    if d == 0 or not math.isfinite(d):
        return None
    z_a, z_b = float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))
    if binary:
        p = (mean_a + mean_b) / 2
        n = (z_a * math.sqrt(2 * p * (1 - p)) + z_b * math.sqrt(var_a + var_b)) ** 2 / d**2
    else:
        n = (z_a + z_b) ** 2 * (var_a + var_b) / d**2
    return float(math.ceil(n)) if math.isfinite(n) else None


def ab_report(
    metric: str,
    a: Sequence[float],
    b: Sequence[float],
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    kind: Kind = "auto",
) -> dict[str, float | None]:
    """Compare arm B with arm A on ``metric`` (the difference is B - A).

    Args:
        metric: The metric's name (for messages), e.g. ``"conversion"`` or ``"latency_ms"``.
        a: Per-request outcomes of arm A (the champion): 0/1 or booleans for a rate, else numbers.
        b: The same for arm B (the challenger).
        alpha: Significance level of the two-sided test; the interval is ``1 - alpha``.
        power: Power for ``samples_needed_per_arm``.
        kind: ``"binary"``, ``"continuous"``, or ``"auto"``: binary when every sample is 0 or 1.

    Returns:
        ``binary`` (1.0 for a rate), ``n_a``, ``n_b``, ``mean_a``, ``mean_b``, ``difference``, ``ci_low``,
        ``ci_high``, ``statistic`` (z or t), ``p_value``, ``significant`` (1.0 when ``p_value < alpha``, else
        0.0), ``samples_needed_per_arm`` (for the observed effect); None where the data cannot say.

    Raises:
        ConfigError: ``alpha`` or ``power`` outside (0, 1), or ``kind="binary"`` with values other than 0/1.

    Example:
        >>> r = ab_report("latency_ms", [10.0, 12.0, 11.0, 13.0], [20.0, 22.0, 21.0, 23.0])
        >>> r["difference"], r["significant"]
        (10.0, 1.0)
    """
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ConfigError(f"alpha and power must lie in (0, 1); got alpha={alpha}, power={power}")
    xa = [float(v) for v in a]
    xb = [float(v) for v in b]
    if not all(math.isfinite(v) for v in (*xa, *xb)):
        raise ConfigError(f"the {metric!r} samples hold NaN or infinite values; drop them first")
    if kind == "auto":
        binary = _is_binary(xa) and _is_binary(xb)
    elif kind == "binary":
        if not (_is_binary(xa) and _is_binary(xb)):
            raise ConfigError(f"kind='binary' needs 0/1 outcomes for {metric!r}; use kind='continuous' for numbers")
        binary = True
    else:
        binary = False
    n_a, n_b = len(xa), len(xb)
    report: dict[str, float | None] = {
        "binary": 1.0 if binary else 0.0,
        "n_a": float(n_a),
        "n_b": float(n_b),
        "mean_a": sum(xa) / n_a if n_a else None,
        "mean_b": sum(xb) / n_b if n_b else None,
        "difference": None,
        "ci_low": None,
        "ci_high": None,
        "statistic": None,
        "p_value": None,
        "significant": None,
        "samples_needed_per_arm": None,
    }
    if not n_a or not n_b:
        return report
    if binary:
        report.update(_two_proportions(xa, xb, alpha, power))
    elif n_a >= 2 and n_b >= 2:
        report.update(_welch(xa, xb, alpha, power))
    else:
        report["difference"] = sum(xb) / n_b - sum(xa) / n_a
    if report["p_value"] is not None:
        report["significant"] = 1.0 if report["p_value"] < alpha else 0.0
    return report


def _two_proportions(xa: list[float], xb: list[float], alpha: float, power: float) -> dict[str, float | None]:
    from scipy.stats import norm

    n_a, n_b = len(xa), len(xb)
    s_a, s_b = sum(xa), sum(xb)
    p_a, p_b = s_a / n_a, s_b / n_b
    d = p_b - p_a
    z = float(norm.ppf(1 - alpha / 2))
    # Newcombe's hybrid score interval (his method 10) for p_b - p_a.
    lo_a, hi_a = _wilson(s_a, n_a, z)
    lo_b, hi_b = _wilson(s_b, n_b, z)
    ci_low = d - math.sqrt((p_b - lo_b) ** 2 + (hi_a - p_a) ** 2)
    ci_high = d + math.sqrt((hi_b - p_b) ** 2 + (p_a - lo_a) ** 2)
    pooled = (s_a + s_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se > 0:
        stat: float | None = d / se
        p_value: float | None = float(2 * norm.sf(abs(d / se)))
    else:  # both arms all 0 or all 1: no evidence of a difference
        stat, p_value = 0.0, 1.0
    needed = samples_needed(p_a, p_b, p_a * (1 - p_a), p_b * (1 - p_b), alpha=alpha, power=power, binary=True)
    return {
        "difference": d,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "statistic": stat,
        "p_value": p_value,
        "samples_needed_per_arm": needed,
    }


def _welch(xa: list[float], xb: list[float], alpha: float, power: float) -> dict[str, float | None]:
    import numpy as np
    from scipy.stats import ttest_ind

    arr_a, arr_b = np.asarray(xa), np.asarray(xb)
    mean_a, mean_b = float(arr_a.mean()), float(arr_b.mean())
    var_a, var_b = float(arr_a.var(ddof=1)), float(arr_b.var(ddof=1))
    d = mean_b - mean_a
    needed = samples_needed(mean_a, mean_b, var_a, var_b, alpha=alpha, power=power, binary=False)
    if var_a == 0 and var_b == 0:  # constant arms: the t statistic is undefined
        same = d == 0
        return {
            "difference": d,
            "ci_low": d,
            "ci_high": d,
            "statistic": None,
            "p_value": 1.0 if same else 0.0,
            "samples_needed_per_arm": None if same else 2.0,
        }
    result = ttest_ind(arr_b, arr_a, equal_var=False)
    ci = result.confidence_interval(confidence_level=1 - alpha)
    return {
        "difference": d,
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "statistic": float(result.statistic),
        "p_value": float(result.pvalue),
        "samples_needed_per_arm": needed,
    }

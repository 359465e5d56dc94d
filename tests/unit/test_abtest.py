"""A/B statistics: known differences are found, equal arms rarely look different, intervals cover the truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, ttest_ind

from ray_deploy.abtest import ab_report, samples_needed
from ray_deploy.documents import RolloutSection
from ray_deploy.errors import ConfigError

SIMULATIONS = 200
ALPHA = 0.05
# Under the null hypothesis the count of "significant" experiments out of 200 is Binomial(200, 0.05): mean 10.
# We accept the central 99.8% of that distribution: [binom.ppf(0.001), binom.ppf(0.999)] = [2, 21].
FP_LOW, FP_HIGH = int(binom.ppf(0.001, SIMULATIONS, ALPHA)), int(binom.ppf(0.999, SIMULATIONS, ALPHA))
# A 95% interval covers the true difference in Binomial(200, 0.95) experiments: at least binom.ppf(0.001) = 179.
COVER_LOW = int(binom.ppf(0.001, SIMULATIONS, 1 - ALPHA))

KEYS = {
    "binary",
    "n_a",
    "n_b",
    "mean_a",
    "mean_b",
    "difference",
    "ci_low",
    "ci_high",
    "statistic",
    "p_value",
    "significant",
    "samples_needed_per_arm",
}


def test_the_bounds_are_what_the_comments_say() -> None:
    assert (FP_LOW, FP_HIGH, COVER_LOW) == (2, 21, 179)


def test_a_known_lift_in_conversion_is_detected_with_its_interval() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(4_000) < 0.10
    b = rng.random(4_000) < 0.13
    report = ab_report("conversion", a.tolist(), b.tolist())
    assert set(report) == KEYS
    assert report["binary"] == 1.0
    assert report["significant"] == 1.0 and report["p_value"] is not None and report["p_value"] < 0.01
    assert report["ci_low"] is not None and report["ci_high"] is not None
    assert report["ci_low"] < 0.03 < report["ci_high"]
    assert report["ci_low"] > 0
    assert report["difference"] == pytest.approx(b.mean() - a.mean())
    assert (report["n_a"], report["n_b"]) == (4_000.0, 4_000.0)


def test_a_known_shift_in_a_continuous_metric_is_detected_and_matches_welch() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(100.0, 10.0, 500)
    b = rng.normal(103.0, 20.0, 400)
    report = ab_report("latency_ms", a.tolist(), b.tolist())
    assert report["binary"] == 0.0
    assert report["significant"] == 1.0
    expected = ttest_ind(b, a, equal_var=False)
    assert report["p_value"] == pytest.approx(expected.pvalue)
    assert report["ci_low"] is not None and report["ci_high"] is not None
    assert report["ci_low"] < 3.0 < report["ci_high"]


def test_the_difference_interval_matches_newcombes_published_example() -> None:
    # Newcombe (1998), Stat Med 17:873, example: 56/70 vs 48/80, method 10 gives 0.0524 to 0.3339.
    a = [1] * 48 + [0] * 32
    b = [1] * 56 + [0] * 14
    report = ab_report("accuracy", a, b)
    assert report["difference"] == pytest.approx(0.2)
    assert report["ci_low"] == pytest.approx(0.0524, abs=5e-4)
    assert report["ci_high"] == pytest.approx(0.3339, abs=5e-4)


def test_samples_needed_match_the_textbook_values() -> None:
    # 10% -> 15% at alpha 0.05, power 0.8: 686 per arm; a 0.5 sd shift: 63 per arm.
    assert samples_needed(0.10, 0.15, 0.09, 0.1275, binary=True) == 686.0
    assert samples_needed(0.0, 0.5, 1.0, 1.0, binary=False) == 63.0
    assert samples_needed(0.3, 0.3, 0.21, 0.21, binary=True) is None
    report = ab_report("conversion", [1] * 10 + [0] * 90, [1] * 15 + [0] * 85)
    assert report["samples_needed_per_arm"] == 686.0


def test_equal_arms_look_different_about_alpha_of_the_time() -> None:
    rng = np.random.default_rng(3)
    binary_hits = continuous_hits = 0
    for _ in range(SIMULATIONS):
        a, b = rng.random(300) < 0.3, rng.random(300) < 0.3
        binary_hits += ab_report("conversion", a.tolist(), b.tolist())["significant"] == 1.0
        x, y = rng.exponential(50.0, 200), rng.exponential(50.0, 200)
        continuous_hits += ab_report("latency_ms", x.tolist(), y.tolist())["significant"] == 1.0
    assert FP_LOW <= binary_hits <= FP_HIGH
    assert FP_LOW <= continuous_hits <= FP_HIGH


def test_intervals_cover_the_true_difference_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(4)
    binary_cover = continuous_cover = 0
    for _ in range(SIMULATIONS):
        a, b = rng.random(400) < 0.20, rng.random(400) < 0.25
        r = ab_report("conversion", a.tolist(), b.tolist())
        binary_cover += r["ci_low"] <= 0.05 <= r["ci_high"]  # type: ignore[operator]
        x, y = rng.normal(10.0, 3.0, 150), rng.normal(11.0, 5.0, 120)
        r = ab_report("score", x.tolist(), y.tolist())
        continuous_cover += r["ci_low"] <= 1.0 <= r["ci_high"]  # type: ignore[operator]
    assert binary_cover >= COVER_LOW
    assert continuous_cover >= COVER_LOW


def test_degenerate_samples_give_none_instead_of_nonsense() -> None:
    empty = ab_report("conversion", [], [1, 0])
    assert empty["mean_a"] is None and empty["p_value"] is None and empty["significant"] is None
    same = ab_report("conversion", [0] * 50, [0] * 50)
    assert same["p_value"] == 1.0 and same["significant"] == 0.0 and same["samples_needed_per_arm"] is None
    one_each = ab_report("score", [2.5], [3.5])
    assert one_each["difference"] == 1.0 and one_each["p_value"] is None
    constant = ab_report("score", [2.0, 2.0, 2.0], [2.0, 2.0])
    assert constant["p_value"] == 1.0 and constant["ci_low"] == constant["ci_high"] == 0.0


def test_bad_arguments_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match="alpha and power"):
        ab_report("conversion", [1, 0], [0, 1], alpha=1.5)
    with pytest.raises(ConfigError, match="kind='continuous'"):
        ab_report("revenue", [1.5, 0.0], [0.0, 1.0], kind="binary")
    with pytest.raises(ConfigError, match="NaN"):
        ab_report("revenue", [float("nan"), 1.0], [0.0, 1.0])
    forced = ab_report("clicks", [0, 1, 1, 0], [1, 1, 1, 0], kind="continuous")
    assert forced["binary"] == 0.0


def test_the_report_fits_a_rollout_section() -> None:
    report = ab_report("conversion", [1] * 30 + [0] * 70, [1] * 40 + [0] * 60)
    section = {
        "rollout_id": "ab-1",
        "mode": "ab",
        "state": "running",
        "champion": "1",
        "challenger": "2",
        "share": 0.5,
        "step": 0,
        "steps": [0.5],
        "started_at": 0.0,
        "updated_at": 1.0,
        "message": "A/B",
        "history": [],
        "traffic": {},
        "report": report,
    }
    assert RolloutSection.model_validate(section).report["difference"] == pytest.approx(0.1)

"""Drift math: each statistic against scipy, the verdict's thresholds, quality counters, bounded memory."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from ray_deploy import documents
from ray_deploy.config import DriftSpec
from ray_deploy.drift import (
    ReferenceProfile,
    WindowSummary,
    compare,
    histograms,
    ks_from_counts,
    psi,
    trend_point,
)

SPEC = DriftSpec()


def frame(
    rng: np.random.Generator, rows: int, numeric: int = 10, shift: dict[str, float] | None = None
) -> pd.DataFrame:
    shift = shift or {}
    data = {f"x{i}": rng.normal(shift.get(f"x{i}", 0.0), 1.0, rows) for i in range(numeric)}
    return pd.DataFrame(data)


def window_of(profile: ReferenceProfile, data: pd.DataFrame, predictions: object = None) -> WindowSummary:
    window = WindowSummary(profile, SPEC, started_at=100.0)
    window.add(data, predictions, t=160.0)  # type: ignore[arg-type]
    return window


def feature(result: object, name: str) -> dict:
    return next(f for f in result.features if f["feature"] == name)  # type: ignore[attr-defined]


def test_ks_statistic_and_p_value_agree_with_scipy() -> None:
    # binned D on 999 reference quantile edges: within 0.005 of the exact D; p-value within 0.03 (same
    # asymptotic distribution as ks_2samp's 'asymp' mode, evaluated at the binned D)
    rng = np.random.default_rng(1)
    ref = rng.normal(size=50_000)
    profile = ReferenceProfile.build(pd.DataFrame({"x": ref}), None, SPEC)
    for shift, rows in [(0.0, 400), (0.1, 500), (0.2, 300), (0.5, 2000), (1.0, 5000)]:
        cur = rng.normal(shift, 1.0, rows)
        got = feature(
            compare(profile, window_of(profile, pd.DataFrame({"x": cur})), SPEC, domain_classifier=False), "x"
        )
        want = stats.ks_2samp(ref, cur, method="asymp")
        assert got["statistic"] == pytest.approx(want.statistic, abs=0.005)
        assert got["p_value"] == pytest.approx(want.pvalue, abs=0.03)
        if want.pvalue < 1e-6:
            assert got["p_value"] < 1e-5
        assert got["effect_size"] == got["statistic"]


def test_ks_from_counts_on_exact_bins() -> None:
    d, p = ks_from_counts(np.array([50, 50]), np.array([90, 10]))
    assert d == pytest.approx(0.4)
    assert p == pytest.approx(stats.kstwo.sf(0.4, 50))


def test_wasserstein_over_std_agrees_with_exact_value() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(3.0, 2.0, 20_000)
    profile = ReferenceProfile.build(pd.DataFrame({"x": ref}), None, SPEC)
    for cur in [
        rng.normal(3.0, 2.0, 1000),
        rng.normal(4.0, 2.0, 1000),
        rng.normal(3.0, 4.0, 1000),
        rng.exponential(2, 800),
    ]:
        got = feature(
            compare(profile, window_of(profile, pd.DataFrame({"x": cur})), SPEC, domain_classifier=False), "x"
        )
        want = stats.wasserstein_distance(ref, cur) / ref.std(ddof=1)
        assert got["wasserstein"] == pytest.approx(want, abs=0.01)


def test_numeric_psi_on_reference_deciles() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=10_000)
    cur = rng.normal(0.5, 1.0, 2000)
    profile = ReferenceProfile.build(pd.DataFrame({"x": ref}), None, SPEC)
    got = feature(compare(profile, window_of(profile, pd.DataFrame({"x": cur})), SPEC, domain_classifier=False), "x")
    edges = np.quantile(ref, np.arange(1, 10) / 10)
    p = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=10) / len(ref)
    q = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=10) / len(cur)
    assert got["psi"] == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-6)
    assert psi(np.array([10, 0]), np.array([5, 5])) == pytest.approx(
        (0.5 - 1) * np.log(0.5) + (0.5 - 1e-4) * np.log(0.5 / 1e-4)
    )


def test_chi_square_and_jensen_shannon_agree_with_scipy_including_an_unseen_category() -> None:
    rng = np.random.default_rng(4)
    ref = rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2])
    cur = rng.choice(["a", "b", "c", "new"], 600, p=[0.4, 0.3, 0.2, 0.1])
    profile = ReferenceProfile.build(pd.DataFrame({"plan": ref}), None, SPEC)
    got = feature(
        compare(profile, window_of(profile, pd.DataFrame({"plan": cur})), SPEC, domain_classifier=False), "plan"
    )
    table = pd.crosstab(np.r_[np.zeros(len(ref)), np.ones(len(cur))], np.r_[ref, cur]).to_numpy()
    want = stats.chi2_contingency(table, correction=False)
    assert got["test"] == "chi2" and got["kind"] == "categorical"
    assert got["statistic"] == pytest.approx(want.statistic, rel=1e-9)
    assert got["p_value"] == pytest.approx(want.pvalue, rel=1e-6, abs=1e-300)
    js = distance.jensenshannon(table[0] / table[0].sum(), table[1] / table[1].sum(), base=2)
    assert got["effect_size"] == pytest.approx(js, rel=1e-9)
    assert got["drifted"]


def test_benjamini_hochberg_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    ref = frame(rng, 5000, numeric=8)
    profile = ReferenceProfile.build(ref, None, SPEC)
    cur = frame(rng, 300, numeric=8, shift={"x0": 0.3, "x1": 0.15, "x2": 0.1})
    result = compare(profile, window_of(profile, cur), SPEC, domain_classifier=False)
    raw = [f["p_value"] for f in result.features]
    adjusted = [f["adjusted_p_value"] for f in result.features]
    assert adjusted == pytest.approx(list(stats.false_discovery_control(raw, method="bh")))


def test_trivial_difference_on_a_huge_window_is_not_flagged() -> None:
    rng = np.random.default_rng(6)
    profile = ReferenceProfile.build(frame(rng, 100_000, numeric=2), None, SPEC)
    for shift in (0.01, 0.05):  # 0.05 std is significant on 1M rows but far below the effect thresholds
        window = WindowSummary(profile, SPEC, started_at=0.0)
        for _ in range(5):
            window.add(frame(rng, 200_000, numeric=2, shift={"x0": shift}), None, t=1.0)
        result = compare(profile, window, SPEC, domain_classifier=False)
        assert window.rows == 1_000_000
        assert not result.drifted and result.drifted_features == []
    assert feature(result, "x0")["adjusted_p_value"] < SPEC.alpha  # significant, yet not drifted


def test_a_half_std_shift_on_500_rows_flags_only_that_feature() -> None:
    rng = np.random.default_rng(7)
    ref = frame(rng, 20_000, numeric=10)
    ref["plan"] = rng.choice(["basic", "pro", "team"], len(ref))
    profile = ReferenceProfile.build(ref, (ref["x0"] > 0).astype(int).to_numpy(), SPEC)
    cur = frame(rng, 500, numeric=10, shift={"x3": 0.5})
    cur["plan"] = rng.choice(["basic", "pro", "team"], len(cur))
    result = compare(profile, window_of(profile, cur, (cur["x0"] > 0).astype(int).to_numpy()), SPEC)
    assert result.drifted_features == ["x3"]
    assert result.drifted
    assert result.share_drifted == pytest.approx(1 / 12)
    assert [f["feature"] for f in result.features] == [*[f"x{i}" for i in range(10)], "plan", "prediction"]
    for item in result.features:
        documents.FeatureDrift.model_validate(item)


def test_a_flipped_correlation_is_caught_only_by_the_domain_classifier() -> None:
    rng = np.random.default_rng(8)

    def correlated(rows: int, rho: float) -> pd.DataFrame:
        values = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], rows)
        return pd.DataFrame({"a": values[:, 0], "b": values[:, 1], "c": rng.normal(size=rows)})

    profile = ReferenceProfile.build(correlated(20_000, 0.9), None, SPEC)
    result = compare(profile, window_of(profile, correlated(500, -0.9)), SPEC)
    assert result.drifted_features == []
    assert result.auc is not None and result.auc >= SPEC.auc_threshold
    assert result.drifted
    same = compare(profile, window_of(profile, correlated(500, 0.9)), SPEC)
    assert same.auc is not None and same.auc < SPEC.auc_threshold and not same.drifted


def test_too_few_rows_for_the_domain_classifier_give_no_auc() -> None:
    rng = np.random.default_rng(9)
    profile = ReferenceProfile.build(frame(rng, 1000, numeric=2), None, SPEC)
    assert compare(profile, window_of(profile, frame(rng, 40, numeric=2)), SPEC).auc is None


def test_quality_counters_missing_out_of_range_unseen() -> None:
    ref = pd.DataFrame({"age": [20.0, 30.0, 40.0, 50.0] * 25, "plan": ["a", "b"] * 50, "n": [1, 2] * 50})
    profile = ReferenceProfile.build(ref, None, SPEC)
    window = WindowSummary(profile, SPEC, started_at=0.0)
    batch = pd.DataFrame(
        {"age": [10.0, np.nan, 35.0, 99.0, None], "plan": ["a", None, "zzz", "b", "yyy"], "extra": [1, 2, 3, 4, 5]}
    )
    window.add(batch, None, t=1.0)
    window.add(batch, None, t=2.0)
    quality = window.quality()
    assert set(quality) == {"age", "plan", "n"}
    assert quality["age"] == {"missing": 4, "type_violations": 0, "out_of_range": 4, "unseen_categories": 0}
    assert quality["plan"] == {"missing": 2, "type_violations": 0, "out_of_range": 0, "unseen_categories": 4}
    assert quality["n"]["missing"] == 10  # a reference column absent from the batch is missing
    for item in quality.values():
        documents.FieldQuality.model_validate(item)
    result = compare(profile, window, SPEC)
    assert result.quality == quality
    assert [f["feature"] for f in result.features] == ["age", "plan"]  # 'n' has no values to test
    assert (result.rows, result.start, result.end) == (10, 0.0, 2.0)


def test_kinds_and_predictions() -> None:
    rng = np.random.default_rng(10)
    ref = pd.DataFrame(
        {
            "f": rng.normal(size=300),
            "i": rng.integers(0, 9, 300),
            "b": rng.random(300) > 0.5,
            "s": rng.choice(["x", "y"], 300),
            "c": pd.Categorical(rng.choice(["u", "v"], 300)),
        }
    )
    kinds = ReferenceProfile.build(ref, rng.random(300), SPEC).kinds
    assert kinds == {"f": "numeric", "i": "numeric", "b": "categorical", "s": "categorical", "c": "categorical",
                     "prediction": "numeric"}  # fmt: skip
    assert ReferenceProfile.build(ref, rng.integers(0, 2, 300), SPEC).kinds["prediction"] == "categorical"
    two = ReferenceProfile.build(ref, rng.dirichlet([1, 1], 300), SPEC)
    assert two.kinds["prediction"] == "numeric"  # positive-class score
    three = ReferenceProfile.build(ref, rng.dirichlet([1, 1, 1], 300), SPEC)
    assert three.kinds["prediction"] == "categorical"  # argmax class
    assert list(three.categorical["prediction"].categories.sort_values()) == [0, 1, 2]
    with pytest.raises(ValueError, match="predictions have 3 rows"):
        ReferenceProfile.build(ref, np.zeros(3), SPEC)


def test_reference_is_sampled_down_and_profile_pickles() -> None:
    rng = np.random.default_rng(11)
    spec = DriftSpec(reference_rows=1000)
    profile = ReferenceProfile.build(frame(rng, 5000, numeric=3), None, spec)
    assert profile.rows == 1000 and profile.numeric["x0"].n == 1000
    again = pickle.loads(pickle.dumps(profile))
    assert again.features == profile.features and np.array_equal(again.sample, profile.sample)


def test_memory_stays_bounded_under_a_million_rows() -> None:
    rng = np.random.default_rng(12)
    ref = frame(rng, 10_000, numeric=3)
    ref["plan"] = rng.choice(["a", "b", "c"], len(ref))
    profile = ReferenceProfile.build(ref, None, SPEC)
    window = WindowSummary(profile, SPEC, started_at=0.0)
    sizes = {}
    for batch in range(100):
        data = frame(rng, 10_000, numeric=3)
        data["plan"] = [f"user-{batch}-{i}" for i in range(10_000)]  # every value unseen and distinct
        window.add(data, None, t=float(batch))
        if window.rows in (10_000, 1_000_000):
            sizes[window.rows] = len(pickle.dumps(window))
    assert window.rows == 1_000_000
    assert sizes[1_000_000] < 500_000
    assert sizes[1_000_000] < 1.1 * sizes[10_000]
    assert len(window.sample) == 2000
    assert window.quality()["plan"]["unseen_categories"] == 1_000_000


def test_reservoir_is_a_uniform_sample() -> None:
    profile = ReferenceProfile.build(pd.DataFrame({"x": np.arange(1000.0)}), None, SPEC)
    window = WindowSummary(profile, SPEC, started_at=0.0, seed=3)
    for start in range(0, 100_000, 7_000):
        window.add(pd.DataFrame({"x": np.arange(start, min(start + 7_000, 100_000), dtype=float)}), None, t=1.0)
    values = window.sample[:, 0]
    assert len(np.unique(values)) == 2000
    # uniform over 0..99,999: each tenth of the stream holds about 200 of the 2,000 sampled rows
    counts = np.bincount((values // 10_000).astype(int), minlength=10)
    assert stats.chisquare(counts).pvalue > 0.001


def test_ready_by_rows_or_by_time_with_min_rows() -> None:
    spec = DriftSpec(window_rows=100, window_s=60, min_rows=20)
    profile = ReferenceProfile.build(pd.DataFrame({"x": np.arange(50.0)}), None, spec)
    window = WindowSummary(profile, spec, started_at=1000.0)
    window.add(pd.DataFrame({"x": np.arange(10.0)}), None, t=1001.0)
    assert not window.ready(1001.0) and not window.ready(1100.0)  # 10 rows < min_rows even after 60 s
    window.add(pd.DataFrame({"x": np.arange(10.0)}), None, t=1002.0)
    assert not window.ready(1059.0) and window.ready(1060.0)
    window.add(pd.DataFrame({"x": np.arange(80.0)}), None, t=1003.0)
    assert window.ready(1003.0)


def test_few_false_alarms_on_undrifted_windows() -> None:
    # 100 undrifted windows of 500 rows, 10 features: measured 0 windows with a drifted feature (seed 13);
    # the domain classifier on 20 of them: the largest AUC 0.544 (threshold 0.6).
    rng = np.random.default_rng(13)
    ref = frame(rng, 20_000, numeric=8)
    ref["plan"] = rng.choice(["a", "b", "c", "d"], len(ref), p=[0.4, 0.3, 0.2, 0.1])
    ref["seg"] = rng.choice(list("pqrstuvw"), len(ref))
    profile = ReferenceProfile.build(ref, None, SPEC)
    drifted = 0
    for i in range(100):
        cur = frame(rng, 500, numeric=8)
        cur["plan"] = rng.choice(["a", "b", "c", "d"], len(cur), p=[0.4, 0.3, 0.2, 0.1])
        cur["seg"] = rng.choice(list("pqrstuvw"), len(cur))
        result = compare(profile, window_of(profile, cur), SPEC, domain_classifier=i < 20, seed=i)
        drifted += result.drifted
    assert drifted <= 5


def test_histograms_and_trend_point_are_plain_json() -> None:
    rng = np.random.default_rng(14)
    ref = frame(rng, 5000, numeric=1)
    ref["plan"] = rng.choice(["a", "b"], len(ref))
    profile = ReferenceProfile.build(ref, None, SPEC)
    cur = frame(rng, 500, numeric=1, shift={"x0": 10.0})
    cur["plan"] = rng.choice(["a", "new"], len(cur))
    window = window_of(profile, cur)
    hist = histograms(profile, window)
    assert hist["x0"]["kind"] == "numeric"
    assert len(hist["x0"]["edges"]) == len(hist["x0"]["reference"]) + 1 == 21
    assert sum(hist["x0"]["reference"]) == 5000 and sum(hist["x0"]["window"]) == 500
    assert hist["x0"]["edges"][-1] == pytest.approx(cur["x0"].max())
    assert hist["plan"]["categories"][-2:] == ["(other)", "(unseen)"]
    assert hist["plan"]["window"][-1] == int((cur["plan"] == "new").sum())
    import json

    json.dumps(hist)
    result = compare(profile, window, SPEC)
    point = trend_point(result, "warning")
    documents.DriftTrendPoint.model_validate(point)
    assert point["drifted_features"] == ["x0", "plan"] and point["t"] == 160.0

"""The pure math of drift and data-quality monitoring: profile a reference, summarise a window, compare them.

Three steps, none of them doing I/O or keeping time itself:

1. :meth:`ReferenceProfile.build` summarises the reference data of a model version once: quantile bins, counts
   and moments per numeric column, category counts per categorical column, the same for the model's output
   (the feature ``prediction``), and a bounded sample of whole rows for the domain classifier.
2. :class:`WindowSummary` counts the captured traffic of one window on the reference's bins, batch by batch,
   in bounded memory (fixed-size count arrays, at most 1,000 distinct unseen categories per column, a
   2,000-row reservoir sample), together with the data-quality counters.
3. :func:`compare` turns a profile and a window into a :class:`WindowResult`: per feature a two-sample
   Kolmogorov-Smirnov test (numeric) or a chi-square test (categorical), Benjamini-Hochberg adjusted across the
   window, effect sizes (KS D, Jensen-Shannon distance, PSI, Wasserstein / std) and a domain-classifier AUC
   that catches changes no single feature shows (e.g. a flipped correlation).

A feature drifts only when its adjusted p-value is below ``spec.alpha`` *and* its effect size passes the
threshold, so a huge window does not flag a trivial difference. The KS statistic is computed on 999 reference
quantile edges (it agrees with ``scipy.stats.ks_2samp`` within 0.005 on continuous data, see the unit tests),
and its p-value with the same asymptotic distribution ``ks_2samp`` uses for large samples
(``scipy.stats.kstwo`` at the effective sample size ``n*m/(n+m)``).

The module is imported by the Monitor and by report code only, never by ``import ray_deploy``.

Example:
    >>> spec = DriftSpec(window_rows=500)
    >>> profile = ReferenceProfile.build(reference_frame, reference_predictions, spec)
    >>> window = WindowSummary(profile, spec, started_at=now)
    >>> window.add(batch_frame, batch_predictions, t=now)
    >>> if window.ready(now):
    ...     result = compare(profile, window, spec)
    ...     result.drifted, result.drifted_features
    (True, ['age'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ray_deploy.config import DriftSpec

Kind = Literal["numeric", "categorical"]

PREDICTION = "prediction"
"""Name of the feature that profiles the model's output."""

FINE_QUANTILES = 1000
"""Quantile bins of a numeric feature for the KS statistic and the Wasserstein distance."""
PSI_BINS = 10
"""Bins (reference deciles) of a numeric feature for the PSI."""
PLOT_BINS = 20
"""Bins (reference ventiles) of a numeric feature in :func:`histograms`."""
MAX_CATEGORIES = 1000
"""Most reference categories kept per categorical feature; rarer ones are pooled as ``(other)``."""
MAX_UNSEEN = 1000
"""Most distinct unseen categories a window remembers per feature; the rest are only counted."""
REFERENCE_SAMPLE_ROWS = 5000
"""Rows of the reference kept (uniformly sampled) for the domain classifier."""
WINDOW_SAMPLE_ROWS = 2000
"""Rows of a window kept (reservoir sample) for the domain classifier."""
MIN_CLASSIFIER_ROWS = 50
"""Fewest rows each side needs before the domain classifier runs."""
PSI_EPSILON = 1e-4
"""Share that stands in for an empty bin in the PSI (avoids log(0))."""
MIN_EXPECTED = 5.0
"""Chi-square: categories with an expected count below this (on either side) are pooled into one cell."""

OTHER = "(other)"
UNSEEN = "(unseen)"


# ----------------------------------------------------------------------------------------------------------------
# the reference


@dataclass(frozen=True)
class _NumericRef:
    """Reference summary of one numeric feature. Fine bin ``i`` holds values in ``(edges[i-1], edges[i]]``."""

    edges: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    psi_index: np.ndarray
    plot_index: np.ndarray
    plot_edges: np.ndarray
    n: int
    min: float
    max: float
    mean: float
    std: float


@dataclass(frozen=True)
class _CategoricalRef:
    """Reference summary of one categorical feature: the kept categories, their counts, the pooled rest."""

    categories: pd.Index
    counts: np.ndarray
    other: int
    n: int


@dataclass(frozen=True)
class ReferenceProfile:
    """A bounded, picklable summary of a model version's reference data (built once per version).

    Attributes:
        features: Input feature names in reference order, then the prediction feature if profiled.
        kinds: ``"numeric"`` or ``"categorical"`` per feature.
        numeric: Bins, counts and moments of each numeric feature.
        categorical: Category counts of each categorical feature.
        sample: Up to 5,000 reference rows of the input features, encoded for the domain classifier
            (numeric values as they are, categories as reference category codes, unseen = number of categories).
        rows: Reference rows profiled (after sampling down to ``spec.reference_rows``).
        prediction: Name of the prediction feature, or None when no predictions were profiled.

    Example:
        >>> profile = ReferenceProfile.build(frame, model.predict(frame), DriftSpec())
        >>> profile.features[-1], profile.kinds["prediction"]
        ('prediction', 'categorical')
    """

    features: list[str]
    kinds: dict[str, Kind]
    numeric: dict[str, _NumericRef]
    categorical: dict[str, _CategoricalRef]
    sample: np.ndarray
    rows: int
    prediction: str | None = None

    @property
    def inputs(self) -> list[str]:
        """The input feature names (every feature but the prediction).

        Example:
            >>> profile.inputs
            ['age', 'plan']
        """
        return [f for f in self.features if f != self.prediction]

    @classmethod
    def build(
        cls,
        frame: pd.DataFrame,
        predictions: np.ndarray | pd.Series | None,
        spec: DriftSpec,
        seed: int = 0,
    ) -> ReferenceProfile:
        """Profile the reference data: sample it down to ``spec.reference_rows``, bin and count every column.

        Numeric dtypes are numeric features; object, string, category and bool columns are categorical. The
        predictions become the feature ``prediction``: a 1-D float array is numeric, any other 1-D array
        categorical; a 2-D probability matrix with two columns is profiled as the positive-class score
        (column 1, numeric), one with more columns as its argmax class (categorical).

        Args:
            frame: The reference inputs, one column per feature.
            predictions: The model's output on ``frame`` (same rows), or None.
            spec: The drift settings (``reference_rows`` caps the rows profiled).
            seed: Seed of the uniform samples.

        Returns:
            The profile.

        Raises:
            ValueError: if ``predictions`` has a different number of rows than ``frame``.

        Example:
            >>> profile = ReferenceProfile.build(train_frame, model.predict(train_frame), DriftSpec())
            >>> profile.rows
            100000
        """
        rng = np.random.default_rng(seed)
        pred = _prediction_column(predictions)
        if pred is not None and len(pred) != len(frame):
            raise ValueError(f"predictions have {len(pred)} rows but the reference frame has {len(frame)}")
        if len(frame) > spec.reference_rows:
            keep = np.sort(rng.choice(len(frame), spec.reference_rows, replace=False))
            frame = frame.iloc[keep]
            pred = None if pred is None else pred.iloc[keep]
        frame = frame.reset_index(drop=True)
        kinds: dict[str, Kind] = {}
        numeric: dict[str, _NumericRef] = {}
        categorical: dict[str, _CategoricalRef] = {}
        columns: list[tuple[str, pd.Series]] = [(str(c), frame[c]) for c in frame.columns]
        prediction_name = None
        if pred is not None:
            names = {name for name, _ in columns}
            prediction_name = PREDICTION if PREDICTION not in names else f"model_{PREDICTION}"
            columns.append((prediction_name, pred.reset_index(drop=True)))
        for name, series in columns:
            kind = _kind(series)
            if name == prediction_name and not pd.api.types.is_float_dtype(series.dtype):
                kind = "categorical"
            kinds[name] = kind
            if kind == "numeric":
                numeric[name] = _profile_numeric(series)
            else:
                categorical[name] = _profile_categorical(series)
        inputs = [name for name, _ in columns if name != prediction_name]
        n_sample = min(len(frame), REFERENCE_SAMPLE_ROWS)
        rows = np.sort(rng.choice(len(frame), n_sample, replace=False)) if n_sample else np.zeros(0, dtype=np.int64)
        sample = np.empty((n_sample, len(inputs)))
        for j, name in enumerate(inputs):
            values, _ = _encode(frame[_original(frame, name)], kinds[name], numeric.get(name), categorical.get(name))
            sample[:, j] = values[rows]
        return cls(
            features=[name for name, _ in columns],
            kinds=kinds,
            numeric=numeric,
            categorical=categorical,
            sample=sample,
            rows=len(frame),
            prediction=prediction_name,
        )


def _original(frame: pd.DataFrame, name: str) -> Any:
    """The frame's column label whose string form is ``name`` (labels may be ints)."""
    if name in frame.columns:
        return name
    for label in frame.columns:
        if str(label) == name:
            return label
    raise KeyError(name)


def _prediction_column(predictions: np.ndarray | pd.Series | None) -> pd.Series | None:
    """The model's output as one column (see :meth:`ReferenceProfile.build` for 2-D outputs)."""
    if predictions is None:
        return None
    if isinstance(predictions, pd.Series):
        return predictions.reset_index(drop=True)
    if isinstance(predictions, pd.DataFrame):
        predictions = predictions.to_numpy()
    arr = np.asarray(predictions)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 2 and arr.shape[1] == 2:
        arr = arr[:, 1].astype(np.float64)
    elif arr.ndim == 2:
        arr = np.argmax(arr, axis=1)
    elif arr.ndim != 1:
        arr = arr.reshape(len(arr), -1)[:, 0]
    return pd.Series(arr)


def _kind(series: pd.Series) -> Kind:
    """Numeric for numeric dtypes (bool excluded), categorical for everything else."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return "categorical"
    return "numeric"


def _numeric_values(series: pd.Series | None, rows: int) -> np.ndarray:
    """A column as float64 with NaN for missing (and for values that are not numbers)."""
    if series is None:
        return np.full(rows, np.nan)
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        series = pd.to_numeric(series, errors="coerce")
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _profile_numeric(series: pd.Series) -> _NumericRef:
    x = _numeric_values(series, len(series))
    x = x[~np.isnan(x)]
    if len(x) == 0:
        empty = np.zeros(0)
        return _NumericRef(empty, np.zeros(1, np.int64), np.zeros(1), np.zeros(1, np.intp), np.zeros(1, np.intp),
                           empty, 0, math.nan, math.nan, math.nan, math.nan)  # fmt: skip
    levels = np.arange(1, FINE_QUANTILES) / FINE_QUANTILES
    raw = np.quantile(x, levels)
    edges = np.unique(raw)
    psi_edges = np.unique(raw[FINE_QUANTILES // PSI_BINS - 1 :: FINE_QUANTILES // PSI_BINS])
    plot_edges = np.unique(raw[FINE_QUANTILES // PLOT_BINS - 1 :: FINE_QUANTILES // PLOT_BINS])
    counts, sums = _bin(edges, np.sort(x))
    return _NumericRef(
        edges=edges,
        counts=counts,
        sums=sums,
        psi_index=_reduce_index(edges, psi_edges),
        plot_index=_reduce_index(edges, plot_edges),
        plot_edges=plot_edges,
        n=len(x),
        min=float(x.min()),
        max=float(x.max()),
        mean=float(x.mean()),
        std=float(x.std(ddof=1)) if len(x) > 1 else 0.0,
    )


def _bin(edges: np.ndarray, ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts and sums of sorted values in the bins ``(edges[i-1], edges[i]]`` (open at both ends).

    Sorting the values and locating the few edges in them is ~3x faster than locating every value among the
    edges (``np.searchsorted(edges, values)`` is cache-bound).
    """
    bounds = np.concatenate([[0], np.searchsorted(ordered, edges, side="right"), [len(ordered)]])
    cumulative = np.concatenate([[0.0], np.cumsum(ordered)])
    return np.diff(bounds).astype(np.int64), np.diff(cumulative[bounds])


def _reduce_index(edges: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """``np.add.reduceat`` indices that sum fine-bin counts into the bins of ``coarse`` (a subset of ``edges``)."""
    positions = np.searchsorted(edges, coarse, side="left")
    return np.concatenate([[0], positions + 1]).astype(np.intp)


def _profile_categorical(series: pd.Series) -> _CategoricalRef:
    counts = series.value_counts(dropna=True)
    kept = counts.iloc[:MAX_CATEGORIES]
    return _CategoricalRef(
        categories=pd.Index(kept.index),
        counts=kept.to_numpy(dtype=np.int64),
        other=int(counts.iloc[MAX_CATEGORIES:].sum()),
        n=int(counts.sum()),
    )


def _codes(series: pd.Series, ref: _CategoricalRef) -> np.ndarray:
    """Reference category codes of a column: -1 for values the reference did not keep (or missing)."""
    return np.asarray(ref.categories.get_indexer(series.to_numpy(dtype=object)), dtype=np.int64)


def _encode(
    series: pd.Series, kind: Kind, num: _NumericRef | None, cat: _CategoricalRef | None
) -> tuple[np.ndarray, np.ndarray]:
    """A column encoded for the domain classifier, and its missing mask."""
    if kind == "numeric":
        values = _numeric_values(series, len(series))
        return values, np.isnan(values)
    assert cat is not None
    missing = series.isna().to_numpy()
    codes = _codes(series, cat).astype(np.float64)
    codes[codes < 0] = len(cat.categories)
    codes[missing] = np.nan
    return codes, missing


# ----------------------------------------------------------------------------------------------------------------
# the window


@dataclass
class _NumericWindow:
    counts: np.ndarray
    sums: np.ndarray
    n: int = 0
    lo: float = math.inf
    hi: float = -math.inf


@dataclass
class _CategoricalWindow:
    counts: np.ndarray
    outside: int = 0
    unseen: dict[Any, int] = field(default_factory=dict)
    unseen_overflow: int = 0
    n: int = 0


@dataclass
class _Quality:
    missing: int = 0
    out_of_range: int = 0
    unseen_categories: int = 0


class WindowSummary:
    """The captured traffic of one window, counted on the reference's bins in bounded memory.

    Columns the reference lacks are ignored; reference columns missing from a batch count as missing values.
    Memory is fixed by the reference (count arrays, at most 1,000 remembered unseen categories per feature and a
    2,000-row reservoir sample), whatever the traffic.

    Attributes:
        rows: Rows added so far.
        started_at: When the window opened (seconds since the epoch).
        ended_at: Time of the last batch added (``started_at`` before the first).

    Example:
        >>> window = WindowSummary(profile, DriftSpec(window_rows=500), started_at=1000.0)
        >>> window.add(batch, predictions, t=1001.0)
        >>> window.rows, window.ready(1001.0)
        (200, False)
    """

    def __init__(self, profile: ReferenceProfile, spec: DriftSpec, started_at: float, seed: int = 0) -> None:
        self.profile = profile
        self.spec = spec
        self.started_at = float(started_at)
        self.ended_at = float(started_at)
        self.rows = 0
        self._rng = np.random.default_rng(seed)
        self._numeric = {
            name: _NumericWindow(np.zeros_like(ref.counts), np.zeros_like(ref.sums))
            for name, ref in profile.numeric.items()
        }
        self._categorical = {
            name: _CategoricalWindow(np.zeros_like(ref.counts)) for name, ref in profile.categorical.items()
        }
        self._quality = {name: _Quality() for name in profile.inputs}
        self._sample = np.empty((WINDOW_SAMPLE_ROWS, len(profile.inputs)))
        self._sampled = 0

    @property
    def sample(self) -> np.ndarray:
        """The reservoir sample of encoded input rows (at most 2,000).

        Example:
            >>> window.sample.shape
            (2000, 12)
        """
        return self._sample[: self._sampled]

    def add(self, frame: pd.DataFrame, predictions: np.ndarray | pd.Series | None, t: float) -> None:
        """Count a batch of captured rows (and the model's predictions for them, if any).

        Args:
            frame: The batch's inputs.
            predictions: The model's output on the batch, or None.
            t: When the batch was captured (seconds since the epoch); becomes ``ended_at``.

        Example:
            >>> window.add(pd.DataFrame({"age": [31, 47], "plan": ["pro", "basic"]}), np.array([0, 1]), t=now)
        """
        n = len(frame)
        self.ended_at = float(t)
        if n == 0:
            return
        pred = _prediction_column(predictions)
        if pred is not None and len(pred) != n:
            raise ValueError(f"predictions have {len(pred)} rows but the batch has {n}")
        labels = {str(c): c for c in frame.columns}
        slots, picked = self._reservoir(n)
        for j, name in enumerate(self.profile.features):
            if name == self.profile.prediction:
                series = pred
                if series is None:
                    continue
            else:
                series = frame[labels[name]] if name in labels else None
            encoded = self._add_column(name, series, n)
            if name != self.profile.prediction and len(slots):
                self._sample[slots, j] = encoded[picked]
        self.rows += n

    def _reservoir(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Reservoir sampling (algorithm R), vectorised over a batch: the slots to fill and the batch rows."""
        k = WINDOW_SAMPLE_ROWS
        seen = self.rows + np.arange(n)
        draws = np.where(seen < k, seen, (self._rng.random(n) * (seen + 1)).astype(np.int64))
        take = draws < k
        slots, rows = draws[take], np.flatnonzero(take)
        if len(slots) == 0:
            return slots, rows
        # a later row replaces an earlier one in the same slot: keep the last row per slot
        last = len(slots) - 1 - np.unique(slots[::-1], return_index=True)[1]
        slots, rows = slots[last], rows[last]
        self._sampled = min(k, self._sampled + int(np.count_nonzero(seen < k)))
        return slots, rows

    def _add_column(self, name: str, series: pd.Series | None, n: int) -> np.ndarray:
        quality = self._quality.get(name)
        if self.profile.kinds[name] == "numeric":
            ref = self.profile.numeric[name]
            win = self._numeric[name]
            x = _numeric_values(series, n)
            missing = np.isnan(x)
            valid = x[~missing]
            if len(valid):
                ordered = np.sort(valid)
                counts, sums = _bin(ref.edges, ordered)
                win.counts += counts
                win.sums += sums
                win.n += len(valid)
                win.lo = min(win.lo, float(ordered[0]))
                win.hi = max(win.hi, float(ordered[-1]))
                if quality is not None and ref.n:
                    below = np.searchsorted(ordered, ref.min, side="left")
                    above = len(ordered) - np.searchsorted(ordered, ref.max, side="right")
                    quality.out_of_range += int(below + above)
            if quality is not None:
                quality.missing += int(np.count_nonzero(missing))
            return x
        cref = self.profile.categorical[name]
        cwin = self._categorical[name]
        if series is None:
            if quality is not None:
                quality.missing += n
            return np.full(n, np.nan)
        missing = series.isna().to_numpy()
        codes = _codes(series, cref)
        outside = (codes < 0) & ~missing
        n_outside = int(np.count_nonzero(outside))
        cwin.counts += np.bincount(codes[codes >= 0], minlength=len(cwin.counts))
        cwin.outside += n_outside
        cwin.n += n - int(np.count_nonzero(missing))
        if n_outside:
            self._remember_unseen(cwin, series[outside])
        if quality is not None:
            quality.missing += int(np.count_nonzero(missing))
            quality.unseen_categories += n_outside
        encoded = codes.astype(np.float64)
        encoded[outside] = len(cref.categories)
        encoded[missing] = np.nan
        return encoded

    @staticmethod
    def _remember_unseen(win: _CategoricalWindow, values: pd.Series) -> None:
        """Count unseen values, remembering at most ``MAX_UNSEEN`` distinct ones (the rest: overflow)."""
        counts = values.value_counts()
        known = counts.index.isin(list(win.unseen))
        for key, count in counts[known].items():
            win.unseen[key] += int(count)
        new = counts[~known]
        room = max(0, MAX_UNSEEN - len(win.unseen))
        for key, count in new.iloc[:room].items():
            win.unseen[key] = int(count)
        win.unseen_overflow += int(new.iloc[room:].sum())

    def ready(self, now: float) -> bool:
        """Whether the window can close: ``window_rows`` rows, or ``window_s`` seconds and ``min_rows`` rows.

        Example:
            >>> WindowSummary(profile, DriftSpec(window_s=60, min_rows=100), started_at=0.0).ready(61.0)
            False
        """
        return self.rows_to_close(now) <= 0

    def rows_to_close(self, now: float) -> int:
        """Rows still to add before the window may close at ``now`` (0 or less: it may close now).

        Example:
            >>> WindowSummary(profile, DriftSpec(window_rows=500, window_s=60, min_rows=100), 0.0).rows_to_close(61.0)
            100
        """
        timed_out = now - self.started_at >= self.spec.window_s
        return (min(self.spec.window_rows, self.spec.min_rows) if timed_out else self.spec.window_rows) - self.rows

    def quality(self) -> dict[str, dict[str, int]]:
        """Data-quality counters per input field (validates as ``documents.FieldQuality``; type_violations 0).

        Example:
            >>> window.quality()["age"]
            {'missing': 3, 'type_violations': 0, 'out_of_range': 1, 'unseen_categories': 0}
        """
        return {
            name: {
                "missing": q.missing,
                "type_violations": 0,
                "out_of_range": q.out_of_range,
                "unseen_categories": q.unseen_categories,
            }
            for name, q in self._quality.items()
        }


# ----------------------------------------------------------------------------------------------------------------
# the comparison


@dataclass(frozen=True)
class WindowResult:
    """The verdict on one closed window.

    Attributes:
        features: Per-feature tests, each a dict that validates as ``documents.FeatureDrift`` (features with no
            values in the window are left out).
        drifted_features: Names of the drifted features, inputs first, the prediction last.
        share_drifted: Drifted features / tested features.
        auc: Domain-classifier AUC (reference sample vs window sample), None with fewer than 50 rows a side.
        drifted: The window's verdict: any feature drifted or ``auc >= spec.auc_threshold``.
        rows: Rows in the window.
        start: When the window opened.
        end: Time of its last batch.
        quality: Data-quality counters per input field (each validates as ``documents.FieldQuality``).

    Example:
        >>> result = compare(profile, window, spec)
        >>> result.drifted_features, round(result.share_drifted, 2)
        (['age'], 0.08)
    """

    features: list[dict[str, Any]]
    drifted_features: list[str]
    share_drifted: float
    auc: float | None
    drifted: bool
    rows: int
    start: float
    end: float
    quality: dict[str, dict[str, int]]


def ks_from_counts(ref_counts: np.ndarray, win_counts: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic D and its asymptotic p-value from counts on the same (fine) bins.

    The p-value is ``scipy.stats.kstwo.sf(D, round(n*m/(n+m)))``, what ``scipy.stats.ks_2samp`` uses in its
    asymptotic mode.

    Example:
        >>> ks_from_counts(np.array([50, 50]), np.array([90, 10]))
        (0.4, 4.2e-08)
    """
    from scipy import stats

    n_r, n_w = int(ref_counts.sum()), int(win_counts.sum())
    if n_r == 0 or n_w == 0:
        return 0.0, 1.0
    cdf_r = np.cumsum(ref_counts) / n_r
    cdf_w = np.cumsum(win_counts) / n_w
    d = float(np.max(np.abs(cdf_r - cdf_w)))
    en = max(1, round(n_r * n_w / (n_r + n_w)))
    return d, float(np.clip(stats.kstwo.sf(d, en), 0.0, 1.0))


def psi(ref_counts: np.ndarray, win_counts: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two count vectors on the same bins (empty bins count as ``epsilon``).

    Example:
        >>> round(psi(np.array([50, 50]), np.array([50, 50])), 6)
        0.0
    """
    p = np.maximum(ref_counts / max(1, ref_counts.sum()), epsilon)
    q = np.maximum(win_counts / max(1, win_counts.sum()), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def _numeric_test(ref: _NumericRef, win: _NumericWindow) -> dict[str, Any]:
    from scipy import stats

    d, p = ks_from_counts(ref.counts, win.counts)
    coarse = psi(np.add.reduceat(ref.counts, ref.psi_index), np.add.reduceat(win.counts, ref.psi_index))
    wasserstein = None
    if ref.std > 0:
        ref_at, win_at = ref.counts > 0, win.counts > 0
        distance = stats.wasserstein_distance(
            ref.sums[ref_at] / ref.counts[ref_at],
            win.sums[win_at] / win.counts[win_at],
            ref.counts[ref_at],
            win.counts[win_at],
        )
        wasserstein = float(distance) / ref.std
    return {"kind": "numeric", "test": "ks", "statistic": d, "p_value": p, "effect_size": d, "psi": coarse,
            "wasserstein": wasserstein}  # fmt: skip


def _category_table(ref: _CategoricalRef, win: _CategoricalWindow) -> np.ndarray:
    """2 x k table (reference, window) of counts: kept categories, then the pooled rest and the unseen values."""
    ref_row = np.concatenate([ref.counts, [ref.other]])
    win_row = np.concatenate([win.counts, [win.outside]])
    return np.vstack([ref_row, win_row]).astype(np.float64)


def _pool_sparse(table: np.ndarray) -> np.ndarray:
    """Pool the columns whose expected count is below ``MIN_EXPECTED`` on either side into one column."""
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] == 0:
        return table
    totals = table.sum(axis=1, keepdims=True)
    expected = totals * table.sum(axis=0, keepdims=True) / totals.sum()
    sparse = expected.min(axis=0) < MIN_EXPECTED
    if np.count_nonzero(sparse) <= 1:
        return table
    pooled = table[:, sparse].sum(axis=1, keepdims=True)
    return np.hstack([table[:, ~sparse], pooled])


def _categorical_test(ref: _CategoricalRef, win: _CategoricalWindow) -> dict[str, Any]:
    from scipy import stats
    from scipy.spatial import distance

    table = _pool_sparse(_category_table(ref, win))
    if table.shape[1] < 2:
        statistic, p = 0.0, 1.0
    else:
        chi2 = stats.chi2_contingency(table, correction=False)
        statistic, p = float(chi2.statistic), float(chi2.pvalue)
    p_ref = table[0] / max(1.0, table[0].sum())
    p_win = table[1] / max(1.0, table[1].sum())
    js = float(distance.jensenshannon(p_ref, p_win, base=2)) if table.shape[1] else 0.0
    return {"kind": "categorical", "test": "chi2", "statistic": statistic, "p_value": p,
            "effect_size": 0.0 if math.isnan(js) else js, "psi": psi(table[0], table[1]),
            "wasserstein": None}  # fmt: skip


def compare(
    profile: ReferenceProfile, window: WindowSummary, spec: DriftSpec, *, domain_classifier: bool = True, seed: int = 0
) -> WindowResult:
    """Test every feature of a window against the reference, correct for multiple tests, decide the verdict.

    Args:
        profile: The reference profile.
        window: The window's summary (built on ``profile``).
        spec: Thresholds: ``alpha`` (false discovery rate), ``ks_threshold``, ``psi_threshold``,
            ``js_threshold``, ``auc_threshold``.
        domain_classifier: Also fit the domain classifier (the AUC); False leaves ``auc`` None.
        seed: Seed of the classifier's folds and trees.

    Returns:
        The window's result.

    Example:
        >>> result = compare(profile, window, DriftSpec())
        >>> result.drifted, result.drifted_features, result.auc
        (True, ['age'], 0.71)
    """
    from scipy import stats

    tests: list[dict[str, Any]] = []
    for name in profile.features:
        if profile.kinds[name] == "numeric":
            nwin = window._numeric[name]
            if nwin.n == 0 or profile.numeric[name].n == 0:
                continue
            test = _numeric_test(profile.numeric[name], nwin)
        else:
            cwin = window._categorical[name]
            if cwin.n == 0 or profile.categorical[name].n == 0:
                continue
            test = _categorical_test(profile.categorical[name], cwin)
        tests.append({"feature": name, **test})
    raw = [t["p_value"] for t in tests]
    adjusted = stats.false_discovery_control(raw, method="bh") if raw else np.zeros(0)
    features: list[dict[str, Any]] = []
    for test, adj in zip(tests, adjusted, strict=True):
        if test["kind"] == "numeric":
            big = test["effect_size"] >= spec.ks_threshold or test["psi"] >= spec.psi_threshold
        else:
            big = test["effect_size"] >= spec.js_threshold or test["psi"] >= spec.psi_threshold
        features.append(
            {
                "feature": test["feature"],
                "kind": test["kind"],
                "test": test["test"],
                "statistic": _finite(test["statistic"]),
                "p_value": test["p_value"],
                "adjusted_p_value": float(adj),
                "effect_size": _finite(test["effect_size"]),
                "psi": test["psi"],
                "wasserstein": test["wasserstein"],
                "drifted": bool(adj < spec.alpha and big),
            }
        )
    drifted_features = [f["feature"] for f in features if f["drifted"]]
    auc = domain_auc(profile.sample, window.sample, seed=seed) if domain_classifier else None
    share = len(drifted_features) / len(features) if features else 0.0
    return WindowResult(
        features=features,
        drifted_features=drifted_features,
        share_drifted=share,
        auc=auc,
        drifted=bool(drifted_features) or (auc is not None and auc >= spec.auc_threshold),
        rows=window.rows,
        start=window.started_at,
        end=window.ended_at,
        quality=window.quality(),
    )


def _finite(value: float) -> float:
    return 0.0 if not math.isfinite(value) else float(value)


def domain_auc(reference: np.ndarray, window: np.ndarray, seed: int = 0) -> float | None:
    """Cross-validated AUC of a classifier telling reference rows (0) from window rows (1); 0.5 = the same.

    The larger side is subsampled to the smaller one's size (the AUC does not depend on the class balance, and
    the fit is faster); a small ``HistGradientBoostingClassifier`` (50 iterations, 15 leaves, 32 bins, one
    thread) gives 3-fold cross-validated scores.

    Args:
        reference: Encoded reference rows (``ReferenceProfile.sample``).
        window: Encoded window rows (``WindowSummary.sample``).
        seed: Seed of the subsample, the folds and the trees.

    Returns:
        The AUC, or None when a side has fewer than 50 rows or there are no features.

    Example:
        >>> domain_auc(profile.sample, window.sample)
        0.52
    """
    n = min(len(reference), len(window))
    if n < MIN_CLASSIFIER_ROWS or reference.shape[1] == 0:
        return None
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    ref = reference[rng.choice(len(reference), n, replace=False)] if len(reference) > n else reference
    win = window[rng.choice(len(window), n, replace=False)] if len(window) > n else window
    x = np.vstack([ref, win])
    y = np.concatenate([np.zeros(n), np.ones(n)])
    model = HistGradientBoostingClassifier(
        max_iter=50, max_leaf_nodes=15, max_bins=32, early_stopping=False, random_state=seed
    )
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    # one thread: on a few shared cores OpenMP's threads make these small fits ~10x slower, not faster
    with threadpool_limits(limits=1):
        scores = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


def histograms(profile: ReferenceProfile, window: WindowSummary) -> dict[str, dict[str, Any]]:
    """Reference and window counts per feature, in plain JSON types, for plots.

    Numeric features: ``edges`` (20 reference-ventile bins, the outer edges at the smallest and largest value
    seen) and counts per bin. Categorical features: ``categories`` (the 30 most frequent reference categories,
    then ``(other)`` for the rest and ``(unseen)`` for values the reference did not have) and counts.

    Example:
        >>> histograms(profile, window)["plan"]
        {'kind': 'categorical', 'categories': ['basic', 'pro', '(other)', '(unseen)'], 'reference': [...], ...}
    """
    out: dict[str, dict[str, Any]] = {}
    for name in profile.features:
        if profile.kinds[name] == "numeric":
            ref = profile.numeric[name]
            win = window._numeric[name]
            if ref.n == 0:
                continue
            lo = min(ref.min, win.lo) if win.n else ref.min
            hi = max(ref.max, win.hi) if win.n else ref.max
            edges = [lo, *ref.plot_edges.tolist(), hi]
            out[name] = {
                "kind": "numeric",
                "edges": [float(e) for e in edges],
                "reference": np.add.reduceat(ref.counts, ref.plot_index).astype(int).tolist(),
                "window": np.add.reduceat(win.counts, ref.plot_index).astype(int).tolist(),
            }
        else:
            cref = profile.categorical[name]
            cwin = window._categorical[name]
            top = 30
            out[name] = {
                "kind": "categorical",
                "categories": [str(c) for c in cref.categories[:top]] + [OTHER, UNSEEN],
                "reference": [*cref.counts[:top].tolist(), int(cref.counts[top:].sum()) + cref.other, 0],
                "window": [
                    *cwin.counts[:top].tolist(),
                    int(cwin.counts[top:].sum()),
                    int(cwin.outside),
                ],
            }
    return out


def trend_point(result: WindowResult, level: str) -> dict[str, Any]:
    """The window as a point of the drift trend (validates as ``documents.DriftTrendPoint``).

    Args:
        result: The closed window's result.
        level: The alarm level after this window (``"ok"``, ``"warning"`` or ``"alarm"``).

    Example:
        >>> trend_point(result, "warning")["share_drifted"]
        0.08
    """
    return {
        "t": result.end,
        "rows": result.rows,
        "drifted_features": list(result.drifted_features),
        "share_drifted": result.share_drifted,
        "auc": result.auc,
        "drifted": result.drifted,
        "level": level,
    }

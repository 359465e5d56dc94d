"""What a retrain trains and is judged on: labelled rows from the caller, the reference data and captured traffic.

:func:`gather` puts the sources in one table of feature columns plus ``label`` (the features named as the
reference and the capture name them: a DataFrame's own columns, ``x0, x1, ...`` for arrays). :func:`split` keeps
two data sets out of training for the evaluation gate: ``held_out`` (a random fifth of the non-captured rows) and
``recent`` (the newest quarter of the labelled captured rows); the rest is split into the rows the trials train on
and the rows Tune scores them on. :func:`record` describes exactly what was used (row counts per source, a content
hash, the captured time range), and is stored with the new version.

Example:
    >>> table = gather(user_data=(X, y), reference=(ref_frame, ref_labels), captured=store.read(with_labels=True))
    >>> parts = split(table)
    >>> record(table, parts)["rows"]
    1200
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ray_deploy.capture_store import INPUT_PREFIX, LABEL, META_COLUMNS, PREDICTION
from ray_deploy.errors import ConfigError

SOURCE = "_source"  # user, reference or captured
TIME = "_t"  # capture time of a captured row (NaN otherwise)
MIN_TRAIN_ROWS = 20
HELD_OUT_SHARE = 0.2
RECENT_SHARE = 0.25
VALID_SHARE = 0.2


@dataclass(frozen=True)
class Parts:
    """The retrain data, split: what trials train on, what Tune scores them on, what the gate compares on."""

    train: pd.DataFrame
    valid: pd.DataFrame
    held_out: pd.DataFrame
    recent: pd.DataFrame


def _as_frame(features: Any) -> pd.DataFrame:
    if isinstance(features, pd.DataFrame):
        return features.reset_index(drop=True)
    array = np.asarray(features)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ConfigError(f"retrain data must be a table (DataFrame or 2-D array), got an array of shape {array.shape}")
    return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])


def labelled_frame(data: Any, source: str) -> pd.DataFrame:
    """One source as features + ``label``: a DataFrame with a ``label`` column, or ``(X, y)``.

    Example:
        >>> labelled_frame((np.zeros((3, 2)), [0, 1, 0]), "user").columns.tolist()
        ['x0', 'x1', 'label', '_source', '_t']
    """
    if isinstance(data, tuple) and len(data) == 2:
        frame = _as_frame(data[0])
        labels = np.asarray(data[1].to_numpy() if hasattr(data[1], "to_numpy") else data[1])
        if labels.ndim != 1 or len(labels) != len(frame):
            raise ConfigError(f"data=(X, y) needs one label per row: {len(frame)} rows, labels of shape {labels.shape}")
        frame = frame.assign(**{LABEL: labels})
    elif isinstance(data, pd.DataFrame):
        if LABEL not in data.columns:
            raise ConfigError(f"a data= DataFrame needs a {LABEL!r} column with the target; or pass data=(X, y)")
        frame = data.reset_index(drop=True)
    else:
        raise ConfigError(
            f"data= takes a DataFrame with a {LABEL!r} column or a tuple (X, y), not {type(data).__name__}"
        )
    return frame.assign(**{SOURCE: source, TIME: np.nan})


def captured_frame(captured: pd.DataFrame) -> pd.DataFrame:
    """Labelled captured rows as features + ``label`` (one row per request row; a shadow copy's duplicate dropped).

    Example:
        >>> captured_frame(store.read(with_labels=True))[SOURCE].unique().tolist()
        ['captured']
    """
    if captured.empty or LABEL not in captured.columns:
        return pd.DataFrame()
    rows = captured[captured[LABEL].notna()].drop_duplicates(["request_id", "row"], keep="first")
    inputs = [c for c in rows.columns if c not in (*META_COLUMNS, PREDICTION, LABEL)]
    renamed = {c: c[len(INPUT_PREFIX) :] for c in inputs if c.startswith(INPUT_PREFIX)}
    frame = rows[inputs].rename(columns=renamed).reset_index(drop=True)
    return frame.assign(**{LABEL: rows[LABEL].to_numpy(), SOURCE: "captured", TIME: rows["t"].to_numpy()})


def gather(
    user_data: Any = None, reference: tuple[pd.DataFrame, Any] | None = None, captured: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """All labelled rows in one table (features in the first source's column order), and notes on what was left out.

    Captured rows lacking a feature column (excluded from capture) are left out, with a note saying so.

    Raises:
        ConfigError: when there are fewer than :data:`MIN_TRAIN_ROWS` labelled rows, saying where labels come from.

    Example:
        >>> table, notes = gather(reference=(frame, labels), captured=store.read(with_labels=True))
    """
    parts: list[pd.DataFrame] = []
    notes: list[str] = []
    if user_data is not None:
        parts.append(labelled_frame(user_data, "user"))
    if reference is not None and reference[1] is not None:
        parts.append(labelled_frame((reference[0], reference[1]), "reference"))
    elif reference is not None:
        notes.append("the reference data has no labels (deploy with reference_labels=y_train to train on it)")
    live = captured_frame(captured) if captured is not None else pd.DataFrame()
    features = [c for c in parts[0].columns if c not in (LABEL, SOURCE, TIME)] if parts else None
    if not live.empty:
        live_features = [c for c in live.columns if c not in (LABEL, SOURCE, TIME)]
        missing = [] if features is None else [c for c in features if c not in live_features]
        if missing:
            notes.append(f"captured rows lack {missing} (excluded from capture), so they were not used")
        else:
            features = features or live_features
            parts.append(live)
    columns = [*(features or []), LABEL, SOURCE, TIME]
    table = pd.concat([p[columns] for p in parts], ignore_index=True) if parts else None
    if table is None or len(table) < MIN_TRAIN_ROWS:
        rows = 0 if table is None else len(table)
        raise ConfigError(
            f"only {rows} labelled rows to retrain on (need {MIN_TRAIN_ROWS}+): send labels with feedback(), deploy "
            "with reference_labels=y_train, or pass data=(X, y)" + (f"; {'; '.join(notes)}" if notes else "")
        )
    return table, notes


def split(table: pd.DataFrame, seed: int = 0) -> Parts:
    """Hold out the gate's data sets, then split the rest into train and valid (seeded, reproducible).

    Example:
        >>> parts = split(table); len(parts.train) + len(parts.valid) + len(parts.held_out) + len(parts.recent)
        1200
    """
    rng = np.random.default_rng(seed)
    captured = table[table[SOURCE] == "captured"].sort_values(TIME, kind="stable")
    other = table[table[SOURCE] != "captured"]
    n_recent = int(len(captured) * RECENT_SHARE)
    recent = captured.iloc[len(captured) - n_recent :] if n_recent else captured.iloc[:0]
    other_order = rng.permutation(len(other))
    n_held = int(len(other) * HELD_OUT_SHARE)
    held_out = other.iloc[other_order[:n_held]]
    rest = pd.concat([other.iloc[other_order[n_held:]], captured.iloc[: len(captured) - n_recent]])
    order = rng.permutation(len(rest))
    n_valid = max(1, int(len(rest) * VALID_SHARE))
    valid, train = rest.iloc[order[:n_valid]], rest.iloc[order[n_valid:]]
    if len(train) < MIN_TRAIN_ROWS // 2:
        raise ConfigError(f"only {len(train)} rows left to train on after holding out the gate's data; add labels")
    return Parts(*(p.reset_index(drop=True) for p in (train, valid, held_out, recent)))


def without_meta(frame: pd.DataFrame) -> pd.DataFrame:
    """Features + ``label`` only (what a trainer gets)."""
    return frame.drop(columns=[SOURCE, TIME])


def content_hash(table: pd.DataFrame) -> str:
    """SHA-256 over the rows and labels in order (the same data gives the same hash).

    Example:
        >>> content_hash(table)[:12]
        '3f9a0c1b2d4e'
    """
    hashed = pd.util.hash_pandas_object(without_meta(table).astype(str), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes() + ",".join(map(str, table.columns)).encode()).hexdigest()


def record(table: pd.DataFrame, parts: Parts) -> dict[str, Any]:
    """The ``documents.RetrainData`` of this data: counts per source and split, hash, captured time range.

    Example:
        >>> record(table, split(table))["from_captured"]
        400
    """
    counts = table[SOURCE].value_counts()
    times = table[TIME].dropna()
    return {
        "rows": int(len(table)),
        "train_rows": int(len(parts.train)),
        "valid_rows": int(len(parts.valid)),
        "test_rows": int(len(parts.held_out) + len(parts.recent)),
        "from_reference": int(counts.get("reference", 0)),
        "from_captured": int(counts.get("captured", 0)),
        "from_user": int(counts.get("user", 0)),
        "content_hash": content_hash(table),
        "since": float(times.min()) if len(times) else None,
        "until": float(times.max()) if len(times) else None,
    }

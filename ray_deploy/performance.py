"""Model quality from delayed ground truth: labels joined to captured predictions, and the metrics they give.

Pure: no clock, no I/O. The Monitor owns one :class:`LabelJoin`, feeds it captured rows
(:meth:`LabelJoin.add_predictions`, the format of :mod:`ray_deploy.capture_store`) and ``feedback`` labels
(:meth:`LabelJoin.add_labels`), and puts :meth:`LabelJoin.section` in the status document as its
``performance`` section. Labels for requests older than the join's memory come from the store::

    request_ids, labels = validate_feedback(body)                  # BadRequest on a malformed body
    missing = join.missing(request_ids)
    captured = store.lookup(missing) if missing else None         # in a worker thread
    joined, unknown = join.add_labels(request_ids, labels, now, captured=captured)
    store.write_labels(*expand_labels(request_ids, labels), t=now)

Metrics use :mod:`sklearn.metrics`: accuracy, precision, recall, f1 (binary: the positive class; multiclass:
macro) and ROC AUC for classification; mae, rmse and r2 for regression. A model whose output rows are class
probabilities is judged on the argmax (class index) against labels that are class indexes.

Example:
    >>> join = LabelJoin(window_s=3600)
    >>> join.add_predictions(capture_frame("r1", 100.0, "1", 2.0, 200, pd.DataFrame({"x": [0.5]}), [1]))
    >>> join.add_labels(["r1", "r2"], [1, 0], now=200.0)
    (1, ['r2'])
    >>> join.section(now=200.0, serving_version="1")["metrics"]["accuracy"]
    1.0
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, Literal

import numpy as np
import pandas as pd

from ray_deploy.errors import BadRequest

Task = Literal["classification", "regression"]
METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "precision", "recall", "f1", "auc"),
    "regression": ("mae", "rmse", "r2"),
}
FEEDBACK_SHAPE = '{"request_ids": ["<request id>", ...], "labels": [<label, or a list of one label per row>, ...]}'

# One captured request of one version: (version, t, predictions of its rows in row order).
_Entry = tuple[str, float, tuple[Any, ...]]
# What the join remembers per request id: (version, t, prediction) for the common one-row request answered by
# one version (built in C by zip, no per-row Python), else a list of entries.
_Value = tuple[str, float, Any] | list[_Entry]
# A labelled prediction: (label time, prediction, label), keyed by (request_id, row, version).
_Pair = tuple[float, Any, Any]


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def _is_row(value: Any) -> bool:
    """Whether a prediction is a row of class probabilities (a list, tuple or array)."""
    return isinstance(value, (list, tuple, np.ndarray))


def task_of(predictions: Any) -> Task:
    """What the predictions are: classes (integers, bools, strings, probability rows) or numbers (floats).

    Args:
        predictions: ndarray, list, Series or DataFrame of predictions (1-D, or 2-D probability rows).

    Returns:
        ``"classification"`` or ``"regression"``.

    Raises:
        ValueError: When there are no predictions.

    Example:
        >>> task_of([0.2, 3.5]), task_of(["cat", "dog"]), task_of(np.array([[0.1, 0.9]]))
        ('regression', 'classification', 'classification')
    """
    values = predictions.to_numpy() if isinstance(predictions, (pd.Series, pd.DataFrame)) else predictions
    array = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if array.ndim >= 2:
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        else:
            return "classification"
    if array.size == 0:
        raise ValueError("task_of needs at least one prediction")
    if array.dtype.kind in "biuUS":
        return "classification"
    if array.dtype.kind == "f":
        return "regression"
    present = [v for v in array.tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if any(isinstance(v, (str, bool, np.bool_)) or _is_row(v) for v in present):
        return "classification"
    if present and all(isinstance(v, Integral) for v in present):
        return "classification"
    return "regression"


def _number(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _harmonize(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions of one kind: numbers with numbers, else both as strings."""
    numeric_true, numeric_pred = y_true.dtype.kind in "biuf", y_pred.dtype.kind in "biuf"
    if numeric_true and numeric_pred:
        return y_true, y_pred
    try:
        return (
            np.asarray(pd.to_numeric(pd.Series(y_true, dtype=object)), dtype=np.float64),
            np.asarray(pd.to_numeric(pd.Series(y_pred, dtype=object)), dtype=np.float64),
        )
    except (ValueError, TypeError):
        return y_true.astype(str), y_pred.astype(str)


def model_metrics(task: Task, y_true: Any, y_pred: Any, scores: Any = None) -> dict[str, float | None]:
    """Quality metrics of predictions against labels; a metric that cannot be computed is None.

    Classification gives accuracy, precision, recall, f1 (binary: of the positive class, which is 1 for 0/1
    labels and otherwise the greater label; more classes: macro average) and auc (binary with scores;
    multiclass one-vs-rest macro over the classes present when probabilities are given; None with one class).
    Regression gives mae, rmse and r2 (r2 needs 2 rows). When ``y_pred`` holds probability rows, they become
    ``scores`` and the predicted label is their argmax, compared with labels as class indexes.

    Args:
        task: ``"classification"`` or ``"regression"`` (see :func:`task_of`).
        y_true: The labels.
        y_pred: The predictions (labels, numbers, or rows of class probabilities).
        scores: Class probabilities ``(n, k)``, or the positive class's probability ``(n,)`` for binary.

    Returns:
        Metric name to value.

    Raises:
        ValueError: When labels and predictions differ in length, or probability outputs meet labels that are
            not class indexes.

    Example:
        >>> model_metrics("classification", [0, 1, 1, 0], [0, 1, 0, 0], scores=[0.1, 0.9, 0.4, 0.3])
        {'accuracy': 0.75, 'precision': 1.0, 'recall': 0.5, 'f1': 0.6666666666666666, 'auc': 1.0}
    """
    from sklearn import metrics

    truth = np.asarray(y_true.to_numpy() if isinstance(y_true, pd.Series) else y_true)
    pred_values = y_pred.to_numpy() if isinstance(y_pred, (pd.Series, pd.DataFrame)) else y_pred
    if (
        isinstance(pred_values, np.ndarray)
        and pred_values.dtype == object
        and len(pred_values)
        and _is_row(pred_values[0])
    ):
        pred_values = [list(v) for v in pred_values]
    pred = np.asarray(pred_values)
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if pred.ndim == 2:
        scores, pred = pred.astype(np.float64), np.argmax(pred, axis=1)
    if len(truth) != len(pred):
        raise ValueError(f"{len(truth)} labels for {len(pred)} predictions; send one label per prediction")
    names = METRICS[task]
    if len(truth) == 0:
        return dict.fromkeys(names)
    if task == "regression":
        t, p = truth.astype(np.float64), pred.astype(np.float64)
        return {
            "mae": _number(metrics.mean_absolute_error(t, p)),
            "rmse": _number(math.sqrt(metrics.mean_squared_error(t, p))),
            "r2": _number(metrics.r2_score(t, p)) if len(t) >= 2 else None,
        }
    score = None if scores is None else np.asarray(scores, dtype=np.float64)
    if score is not None and score.ndim == 2:
        as_float = truth.astype(np.float64)
        if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            raise ValueError("the model outputs class probabilities; labels must be class indexes 0..k-1")
        truth = as_float.astype(np.int64)
    truth, pred = _harmonize(truth, pred)
    classes = np.unique(np.concatenate([truth, pred]))
    k = score.shape[1] if score is not None and score.ndim == 2 else len(classes)
    out: dict[str, float | None] = {"accuracy": _number(metrics.accuracy_score(truth, pred))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if k <= 2 and len(classes) <= 2:
            binary = classes.dtype.kind in "biuf" and set(classes.tolist()) <= {0, 1}
            positive = 1 if binary else classes[-1]
            kwargs: dict[str, Any] = {"pos_label": positive, "average": "binary", "zero_division": np.nan}
            if score is not None and score.ndim == 2:
                score = score[:, 1] if score.shape[1] > 1 else score[:, 0]
            hits = truth == positive
            out["auc"] = (
                _number(metrics.roc_auc_score(hits, score))
                if score is not None and len(score) == len(truth) and 0 < hits.sum() < len(hits)
                else None
            )
        else:
            kwargs = {"average": "macro", "zero_division": np.nan}
            out["auc"] = _ovr_auc(truth, score) if score is not None and score.ndim == 2 else None
        out["precision"] = _number(metrics.precision_score(truth, pred, **kwargs))
        out["recall"] = _number(metrics.recall_score(truth, pred, **kwargs))
        out["f1"] = _number(metrics.f1_score(truth, pred, **kwargs))
    return {name: out[name] for name in names}


def _ovr_auc(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """One-vs-rest ROC AUC, macro over the classes that occur in ``truth`` (None with fewer than two)."""
    from sklearn.metrics import roc_auc_score

    present = [c for c in np.unique(truth).tolist() if 0 <= c < scores.shape[1]]
    if len(present) < 2:
        return None
    return _number(np.mean([roc_auc_score(truth == c, scores[:, c]) for c in present]))


# ---------------------------------------------------------------------------------------------------------------
# Feedback validation


def _bad(message: str) -> BadRequest:
    return BadRequest(f"{message}; send {FEEDBACK_SHAPE} with one label per request id")


def _check_scalar(request_id: str, value: Any) -> None:
    if isinstance(value, (bool, str)):
        return
    if isinstance(value, Real) and not isinstance(value, complex):
        if not math.isfinite(float(value)):
            raise _bad(f"the label of request {request_id!r} is {value!r}; labels must be finite numbers or strings")
        return
    if value is None:
        raise _bad(f"the label of request {request_id!r} is null")
    raise _bad(f"the label of request {request_id!r} is {type(value).__name__}; labels are numbers, strings or bools")


def validate_feedback(request_ids: Any, labels: Any = None) -> tuple[list[str], list[Any]]:
    """Checked request ids and labels of a ``feedback`` call; a clear :class:`BadRequest` otherwise.

    A request id is a non-empty string; a label is a JSON scalar (number, string, bool) for a one-row request or
    a list with one scalar per row.

    Args:
        request_ids: The ``request_ids`` list, or the whole JSON body (a dict with both keys).
        labels: The ``labels`` list (omit when passing the body).

    Returns:
        ``(request_ids, labels)`` as lists.

    Raises:
        BadRequest: Naming what is wrong (missing key, unequal lengths, an empty id, a null label, ...).

    Example:
        >>> validate_feedback({"request_ids": ["a", "b"], "labels": [1, [0, 1]]})
        (['a', 'b'], [1, [0, 1]])
    """
    if isinstance(request_ids, dict) and labels is None:
        body = request_ids
        missing = [k for k in ("request_ids", "labels") if k not in body]
        if missing:
            raise _bad(f"the feedback body lacks {missing}")
        extra = sorted(set(body) - {"request_ids", "labels"})
        if extra:
            raise _bad(f"the feedback body has unknown keys {extra}")
        request_ids, labels = body["request_ids"], body["labels"]
    if not isinstance(request_ids, (list, tuple)) or not isinstance(labels, (list, tuple)):
        raise _bad(
            f"request_ids and labels must be lists, got {type(request_ids).__name__} and {type(labels).__name__}"
        )
    if len(request_ids) != len(labels):
        raise _bad(f"got {len(request_ids)} request ids and {len(labels)} labels; the lists must have equal lengths")
    if not request_ids:
        raise _bad("request_ids is empty")
    for i, (request_id, label) in enumerate(zip(request_ids, labels, strict=True)):
        if not isinstance(request_id, str) or not request_id:
            raise _bad(
                f"request_ids[{i}] is {request_id!r}; a request id is the non-empty string a prediction returned"
            )
        if isinstance(label, (list, tuple)):
            if not label:
                raise _bad(f"the labels of request {request_id!r} are an empty list")
            for value in label:
                _check_scalar(request_id, value)
        else:
            _check_scalar(request_id, label)
    return list(request_ids), list(labels)


def _row_labels(request_id: str, label: Any, rows: int) -> list[Any]:
    """One label per row of a request: a scalar for one row, a list of ``rows`` labels otherwise."""
    values = list(label) if isinstance(label, (list, tuple)) else [label]
    if len(values) != rows:
        raise BadRequest(
            f"request {request_id!r} has {rows} rows but {len(values)} label(s) came for it; send "
            + ("one label (or a list of one)" if rows == 1 else f"a list of {rows} labels, one per row, in row order")
            + f" as its entry of {FEEDBACK_SHAPE}"
        )
    return values


def expand_labels(request_ids: Sequence[str], labels: Sequence[Any]) -> tuple[list[str], list[int], list[Any]]:
    """Per-request labels as per-row lists ``(request_ids, rows, labels)`` for ``CaptureStore.write_labels``.

    Example:
        >>> expand_labels(["a", "b"], [1, [0, 1]])
        (['a', 'b', 'b'], [0, 0, 1], [1, 0, 1])
    """
    ids: list[str] = []
    rows: list[int] = []
    values: list[Any] = []
    for request_id, label in zip(request_ids, labels, strict=True):
        row_values = list(label) if isinstance(label, (list, tuple)) else [label]
        ids.extend([request_id] * len(row_values))
        rows.extend(range(len(row_values)))
        values.extend(row_values)
    return ids, rows, values


def _joinable(request_id: str, row: int, version: str, prediction: Any, label: Any) -> Any:
    """The label as it is compared with this prediction; BadRequest when the two cannot be compared."""
    where = f"request {request_id!r} row {row} (version {version})"
    if _is_row(prediction):
        k = len(prediction)
        number = float(label) if isinstance(label, Real) and not isinstance(label, bool) else math.nan
        if not number.is_integer() or not 0 <= number < k:
            raise _bad(
                f"the label {label!r} of {where} is not a class index: that version outputs probabilities over"
                f" {k} classes, so send the class index 0..{k - 1}"
            )
        return int(number)
    if isinstance(prediction, str):
        if not isinstance(label, str):
            raise _bad(f"the label {label!r} of {where} must be a string like the model's predictions")
        return label
    if isinstance(prediction, (Real, np.number, np.bool_)) and not isinstance(label, (Real, np.number)):
        raise _bad(f"the label {label!r} of {where} must be a number like the model's predictions")
    return label


def _expand(value: _Value) -> list[_Entry]:
    """The entries of a remembered request."""
    if isinstance(value, tuple):
        return [(value[0], value[1], (value[2],))]
    return value


def _plain_list(predictions: pd.Series) -> list[Any]:
    """A prediction column as hashable Python values (probability rows as tuples of floats)."""
    if predictions.dtype == object:
        return [_plain(v) for v in predictions.tolist()]
    return predictions.tolist()


def _plain(value: Any) -> Any:
    """A prediction cell as a hashable Python value (probability rows as tuples of floats)."""
    if _is_row(value):
        return tuple(float(v) for v in value)
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------------------------------------------------
# The join


class LabelJoin:
    """A bounded in-memory join of recent captured predictions with their delayed labels.

    Memory holds at most ``max_predictions`` captured rows (oldest requests evicted first) and
    ``max_labelled`` labelled pairs (labels older than ``window_s`` or beyond the cap go first). A request
    answered by several versions (a shadow copy) is kept once per version, and its label joins to each.

    Example:
        >>> join = LabelJoin(max_predictions=100_000)
        >>> join.add_predictions(frame)
        >>> join.add_labels(["r1"], [[0, 1, 1]], now=time.time())
        (1, [])
    """

    def __init__(self, max_predictions: int = 200_000, window_s: float = 3600.0, max_labelled: int = 100_000) -> None:
        """Set the bounds.

        Args:
            max_predictions: Most captured rows remembered.
            window_s: Seconds of labels (by arrival time) that the metrics cover.
            max_labelled: Most labelled pairs kept.

        Example:
            >>> LabelJoin(max_predictions=50_000, window_s=86_400)
        """
        if max_predictions < 1 or max_labelled < 1 or window_s <= 0:
            raise ValueError("LabelJoin needs max_predictions >= 1, max_labelled >= 1 and window_s > 0")
        self.max_predictions = max_predictions
        self.window_s = window_s
        self.max_labelled = max_labelled
        self.unknown_ids = 0
        self.labels_seen = 0
        self._index: OrderedDict[str, _Value] = OrderedDict()
        self._rows = 0
        self._pairs: OrderedDict[tuple[str, int, str], _Pair] = OrderedDict()
        self._generation = 0
        self._cache: tuple[tuple[int, str | None, float], dict[str, Any]] | None = None

    def __len__(self) -> int:
        """Captured rows remembered."""
        return self._rows

    @property
    def labelled(self) -> int:
        """Labelled pairs kept (in or out of the window)."""
        return len(self._pairs)

    @staticmethod
    def _entries(frame: pd.DataFrame) -> dict[str, list[_Entry]]:
        """Captured rows grouped by request id, one entry per version, predictions in row order."""
        groups: dict[tuple[str, str], tuple[float, dict[int, Any]]] = {}
        versions: dict[str, str] = {}
        for request_id, row, t, version, prediction in zip(
            frame["request_id"].tolist(),
            frame["row"].tolist(),
            frame["t"].tolist(),
            frame["version"].tolist(),
            frame["prediction"].tolist(),
            strict=True,
        ):
            version = versions.setdefault(version, str(version))
            group = groups.get((request_id, version))
            if group is None:
                groups[(request_id, version)] = (t, {row: prediction})
            else:
                group[1][row] = prediction
        out: dict[str, list[_Entry]] = {}
        for (request_id, version), (t, rows) in groups.items():
            predictions = tuple(_plain(rows.get(i)) for i in range(max(rows) + 1))
            out.setdefault(str(request_id), []).append((version, float(t), predictions))
        return out

    def add_predictions(self, frame: pd.DataFrame) -> None:
        """Remember captured rows (the captured row format); the oldest requests go when memory is full.

        Args:
            frame: Rows with at least ``request_id, row, t, version, prediction``.

        Example:
            >>> join.add_predictions(capture_batch(requests))
        """
        if frame.empty:
            return
        index = self._index
        ids = frame["request_id"]
        if not frame["row"].to_numpy().any() and ids.is_unique:
            # fast path: one-row requests, none seen before (one C-level update, no per-row Python)
            keys = [str(i) for i in ids.tolist()] if ids.dtype == object else ids.astype(str).tolist()
            if index.keys().isdisjoint(keys):
                version = frame["version"]
                versions = (
                    itertools.repeat(str(version.iloc[0])) if version.nunique() == 1 else version.astype(str).tolist()
                )
                values = zip(
                    versions, frame["t"].astype(np.float64).tolist(), _plain_list(frame["prediction"]), strict=False
                )
                index.update(zip(keys, values, strict=True))
                self._rows += len(keys)
                self._evict()
                return
        for request_id, entries in self._entries(frame).items():
            old = _expand(index.pop(request_id)) if request_id in index else []
            fresh = {e[0] for e in entries}
            kept = [e for e in old if e[0] not in fresh] + entries
            self._rows += sum(len(e[2]) for e in kept) - sum(len(e[2]) for e in old)
            index[request_id] = (
                (kept[0][0], kept[0][1], kept[0][2][0]) if len(kept) == 1 and len(kept[0][2]) == 1 else kept
            )
        self._evict()

    def _evict(self) -> None:
        index = self._index
        while self._rows > self.max_predictions and index:
            _, evicted = index.popitem(last=False)
            self._rows -= 1 if isinstance(evicted, tuple) else sum(len(e[2]) for e in evicted)

    def missing(self, request_ids: Sequence[str]) -> list[str]:
        """The ids (distinct, in order) that are not in memory: look these up in the store.

        Example:
            >>> join.missing(["r1", "old"])
            ['old']
        """
        return list(dict.fromkeys(i for i in request_ids if i not in self._index))

    def add_labels(
        self,
        request_ids: Sequence[str],
        labels: Sequence[Any],
        now: float,
        captured: pd.DataFrame | None = None,
    ) -> tuple[int, list[str]]:
        """Join labels to remembered predictions (and to ``captured`` rows from the store); all or nothing.

        Every label is checked before any is kept, so a bad one rejects the whole call. A later label of the
        same prediction replaces the earlier one.

        Args:
            request_ids: The requests labelled.
            labels: ``labels[i]`` is a scalar for a one-row request or a list with one label per row.
            now: When the labels arrived (their time in the metrics window).
            captured: Captured rows of ids not in memory (``CaptureStore.lookup``), or None.

        Returns:
            ``(joined, unknown)``: request ids joined, and the ids (distinct) matching no captured prediction.

        Raises:
            BadRequest: On a malformed list, or a label whose count or kind does not fit its request's
                predictions (the message names the request id and what to send).

        Example:
            >>> join.add_labels(["r1", "r2"], [1, [0, 2]], now=1_700_000_000.0)
            (2, [])
        """
        ids, values = validate_feedback(list(request_ids), list(labels))
        stored = self._entries(captured) if captured is not None and not captured.empty else {}
        plan: list[tuple[tuple[str, int, str], _Pair]] = []
        joined: dict[str, None] = {}
        unknown: dict[str, None] = {}
        for request_id, label in zip(ids, values, strict=True):
            value = self._index.get(request_id)
            entries = _expand(value) if value is not None else stored.get(request_id, [])
            if not entries:
                unknown[request_id] = None
                continue
            joined[request_id] = None
            for version, _t, predictions in entries:
                row_labels = _row_labels(request_id, label, len(predictions))
                for row, (prediction, value) in enumerate(zip(predictions, row_labels, strict=True)):
                    if prediction is None:
                        continue
                    value = _joinable(request_id, row, version, prediction, value)
                    plan.append(((request_id, row, version), (float(now), prediction, value)))
        self._keep(plan)
        self.unknown_ids += len(unknown)
        return len(joined), list(unknown)

    def add_rows(self, frame: pd.DataFrame, now: float) -> int:
        """Keep rows that already carry a ``label`` column (e.g. ``CaptureStore.read(with_labels=True)``).

        Unlabelled rows, and rows whose label does not fit the prediction, are skipped.

        Args:
            frame: Captured rows with a ``label`` column.
            now: The time these labels count at in the window.

        Returns:
            Labelled pairs kept.

        Example:
            >>> join.add_rows(store.read(since=now - 3600, with_labels=True), now=now)
            42
        """
        if frame.empty or "label" not in frame.columns:
            return 0
        plan: list[tuple[tuple[str, int, str], _Pair]] = []
        for request_id, row, version, prediction, label in zip(
            frame["request_id"].tolist(),
            frame["row"].tolist(),
            frame["version"].tolist(),
            frame["prediction"].tolist(),
            frame["label"].tolist(),
            strict=True,
        ):
            if label is None or (isinstance(label, float) and math.isnan(label)) or prediction is None:
                continue
            prediction = _plain(prediction)
            try:
                value = _joinable(str(request_id), int(row), str(version), prediction, _plain(label))
            except BadRequest:
                continue
            plan.append(((str(request_id), int(row), str(version)), (float(now), prediction, value)))
        self._keep(plan)
        return len(plan)

    def _keep(self, plan: list[tuple[tuple[str, int, str], _Pair]]) -> None:
        pairs = self._pairs
        for key, pair in plan:
            pairs.pop(key, None)
            pairs[key] = pair
        while len(pairs) > self.max_labelled:
            pairs.popitem(last=False)
        self.labels_seen += len(plan)
        if plan:
            self._generation += 1

    def forget(self, request_ids: Sequence[str]) -> int:
        """Drop these requests' predictions and labels (erasure); returns rows dropped.

        Example:
            >>> join.forget(["r1"])
            2
        """
        wanted = set(request_ids)
        dropped = 0
        for request_id in wanted & self._index.keys():
            rows = sum(len(e[2]) for e in _expand(self._index.pop(request_id)))
            self._rows -= rows
            dropped += rows
        for key in [k for k in self._pairs if k[0] in wanted]:
            del self._pairs[key]
            dropped += 1
        self._generation += 1
        return dropped

    def counts_by_version(self, now: float) -> dict[str, int]:
        """Labelled predictions per version in the window.

        Example:
            >>> join.counts_by_version(now=time.time())
            {'2': 120, '3': 35}
        """
        cutoff = now - self.window_s
        counts: dict[str, int] = {}
        for (_, _, version), (t, _, _) in self._pairs.items():
            if t >= cutoff:
                counts[version] = counts.get(version, 0) + 1
        return counts

    def outcomes(self, version: str, now: float, since: float | None = None) -> list[float]:
        """Per labelled prediction of ``version`` in the window: 1.0 when right, else 0.0 (classification), or
        minus the absolute error (regression), so higher is better; what an A/B test compares. With ``since``,
        only labels that arrived from then on.

        Example:
            >>> join.outcomes("3", now=time.time(), since=ab_test_began)[:4]
            [1.0, 1.0, 0.0, 1.0]
        """
        cutoff = now - self.window_s if since is None else max(now - self.window_s, since)
        out: list[float] = []
        for (_, _, pair_version), (t, prediction, label) in self._pairs.items():
            if pair_version != version or t < cutoff:
                continue
            if _is_row(prediction):
                prediction = int(np.argmax(np.asarray(prediction, dtype=np.float64)))
            if isinstance(prediction, float) and not float(prediction).is_integer():
                out.append(-abs(float(prediction) - float(label)))
            else:
                out.append(1.0 if prediction == label or str(prediction) == str(label) else 0.0)
        return out

    def section(self, now: float, serving_version: str | None) -> dict[str, Any]:
        """The ``performance`` section of the status document (validates as ``documents.PerformanceSection``).

        Metrics cover the labels that arrived in the last ``window_s`` seconds: ``metrics`` of the serving
        version, ``by_version`` of every version with such labels. The Monitor may send null instead while
        :attr:`labels_seen` and :attr:`unknown_ids` are both 0.

        Args:
            now: Current time, seconds since the epoch.
            serving_version: The version that serves (its metrics are ``metrics``).

        Returns:
            The section as a dict.

        Example:
            >>> join.section(now=time.time(), serving_version="3")["by_version"]["3"]["f1"]
            0.91
        """
        cutoff = now - self.window_s
        pairs = self._pairs
        while pairs:
            key = next(iter(pairs))
            if pairs[key][0] >= cutoff:
                break
            del pairs[key]
            self._generation += 1
        cache_key = (self._generation, serving_version, self.window_s)
        if self._cache is not None and self._cache[0] == cache_key:
            return _copy({**self._cache[1], "unknown_ids": self.unknown_ids})
        by_version: dict[str, tuple[list[Any], list[Any]]] = {}
        labelled = 0
        for (_, _, version), (t, prediction, label) in pairs.items():
            if t < cutoff:
                continue
            preds, truth = by_version.setdefault(version, ([], []))
            preds.append(prediction)
            truth.append(label)
            labelled += 1
        tasks: dict[str, Task] = {}
        metrics: dict[str, dict[str, float | None]] = {}
        for version, (preds, truth) in sorted(by_version.items()):
            version_task = task_of(preds if not _is_row(preds[0]) else np.asarray(preds, dtype=np.float64))
            tasks[version] = version_task
            try:
                metrics[version] = model_metrics(version_task, _column(truth), _column(preds))
            except ValueError:
                metrics[version] = dict.fromkeys(METRICS[version_task])
        task: Task | None = None
        if serving_version in tasks:
            task = tasks[serving_version]
        elif tasks:
            task = tasks[max(by_version, key=lambda v: len(by_version[v][0]))]
        serving = metrics.get(serving_version or "")
        section = {
            "task": task,
            "labelled": labelled,
            "window_s": float(self.window_s),
            "metrics": serving if serving is not None else (dict.fromkeys(METRICS[task]) if task else {}),
            "by_version": metrics,
            "unknown_ids": self.unknown_ids,
        }
        self._cache = (cache_key, section)
        return _copy(section)


def _copy(section: dict[str, Any]) -> dict[str, Any]:
    """A copy of a cached section that a caller may change."""
    return {
        **section,
        "metrics": dict(section["metrics"]),
        "by_version": {v: dict(m) for v, m in section["by_version"].items()},
    }


def _column(values: list[Any]) -> Any:
    """A list of predictions or labels as sklearn takes it (probability rows as a matrix)."""
    if values and _is_row(values[0]):
        return np.asarray(values, dtype=np.float64)
    return np.asarray(values, dtype=object if any(isinstance(v, str) for v in values) else None)

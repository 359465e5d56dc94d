"""Where captured requests and their delayed labels live: Parquet files under ``Settings.capture_uri``.

One :class:`CaptureStore` per deployment keeps two trees under ``<root>/<name>/``::

    captures/version=<v>/hour=<YYYY-MM-DDTHH>/part-<uuid>.parquet   one row per input row of a request
    labels/hour=<YYYY-MM-DDTHH>/part-<uuid>.parquet                  request_id, row, label, t (label time)

``root`` is a local folder or any pyarrow filesystem URI (``file:///data/captures``, ``s3://bucket/prefix``).
Hours are UTC hours of ``t``; a version folder name is the URL-quoted version string. Every file is written
under a hidden temporary name and renamed into place, so a reader never sees half a file. Reads prune by
folder (version, hour) before opening any file, and files written with different columns (a new version with
other inputs) read together as the union of their columns.

The captured row format (:func:`capture_frame`, :func:`capture_batch`) is ``request_id, row, t, version,
latency_ms, status``, the input columns (one named like a metadata column is stored as ``input.<name>``) and
``prediction`` (a scalar per row for 1-D outputs, a list of floats per row for 2-D outputs such as class
probabilities). Pseudonymising and dropping columns (:func:`pseudonymize`, :func:`drop_columns`) happens in
the replica, before any data leaves it.

Example:
    >>> store = CaptureStore("/tmp/captures", "iris")
    >>> frame = capture_frame("r1", 1_700_000_000.0, "3", 4.2, 200, pd.DataFrame({"x": [1.0, 2.0]}), [0, 1])
    >>> store.write(frame)
    2
    >>> store.write_labels(["r1", "r1"], [0, 1], [0, 0], t=1_700_000_100.0)
    2
    >>> store.read(version="3")[["request_id", "row", "prediction", "label"]].values.tolist()
    [['r1', 0, 0, 0], ['r1', 1, 1, 0]]
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

META_COLUMNS: tuple[str, ...] = ("request_id", "row", "t", "version", "latency_ms", "status")
PREDICTION = "prediction"
LABEL = "label"
LABEL_COLUMNS: tuple[str, ...] = ("request_id", "row", "label", "t")
# Input columns with these names are stored as ``input.<name>``.
RESERVED_COLUMNS = frozenset({*META_COLUMNS, PREDICTION, LABEL})
INPUT_PREFIX = "input."

_HOUR_S = 3600
_HOUR_FORMAT = "%Y-%m-%dT%H"
_META_DTYPES: dict[str, str] = {
    "request_id": "object",
    "row": "int64",
    "t": "float64",
    "version": "object",
    "latency_ms": "float64",
    "status": "int64",
}
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)

# One captured request as capture_batch takes it: request_id, t, version, latency_ms, status, inputs, predictions.
CapturedRequest = tuple[str, float, str, float, int, Any, Any]


# ---------------------------------------------------------------------------------------------------------------
# The captured row format


def capture_frame(
    request_id: str,
    t: float,
    version: str,
    latency_ms: float,
    status: int,
    inputs: pd.DataFrame,
    predictions: Any,
) -> pd.DataFrame:
    """The captured rows of one request: one row per input row, metadata first and ``prediction`` last.

    Args:
        request_id: The request's id (what ``feedback`` labels refer to).
        t: When the request was answered, seconds since the epoch.
        version: Registry version that answered.
        latency_ms: Time the request took.
        status: HTTP status of the answer.
        inputs: The model input, one row per prediction (a dict of columns or list of records also works).
        predictions: ndarray, list, Series or DataFrame with one entry per input row; 1-D gives a scalar per
            row, 2-D (class probabilities) a list of floats per row (an ``(n, 1)`` output counts as 1-D).

    Returns:
        The frame in the captured row format.

    Raises:
        ValueError: When the number of predictions differs from the number of input rows.

    Example:
        >>> capture_frame("r1", 1e9, "2", 3.0, 200, pd.DataFrame({"row": [5]}), [[0.2, 0.8]]).columns.tolist()
        ['request_id', 'row', 't', 'version', 'latency_ms', 'status', 'input.row', 'prediction']
    """
    return capture_batch([(request_id, t, version, latency_ms, status, inputs, predictions)])


def capture_batch(requests: Iterable[CapturedRequest]) -> pd.DataFrame:
    """The captured rows of many requests at once: cheaper than concatenating :func:`capture_frame` results.

    The metadata columns are built with one ``numpy.repeat`` each and the inputs with one ``pandas.concat``, so
    the Monitor should turn a whole batch of samples into one frame with this, then call
    :meth:`CaptureStore.write` once. Requests whose inputs have other columns (another version) give the union
    of the columns; :meth:`CaptureStore.write` drops a version's all-null columns again.

    Args:
        requests: Tuples ``(request_id, t, version, latency_ms, status, inputs, predictions)`` as
            :func:`capture_frame` takes them.

    Returns:
        One frame in the captured row format (empty, with the metadata columns, when there are no rows).

    Raises:
        ValueError: When a request has a different number of predictions and input rows (names the request).

    Example:
        >>> batch = capture_batch(
        ...     (s.request_id, s.t, s.version or "", s.latency_ms, s.status, s.inputs, s.outputs)
        ...     for s in samples
        ...     if s.captured
        ... )
        >>> store.write(batch)
        120
    """
    ids: list[str] = []
    ts: list[float] = []
    versions: list[str] = []
    latencies: list[float] = []
    statuses: list[int] = []
    counts: list[int] = []
    inputs: list[pd.DataFrame] = []
    predictions: list[Any] = []
    two_d = False
    for request_id, t, version, latency_ms, status, request_inputs, request_predictions in requests:
        frame = request_inputs if isinstance(request_inputs, pd.DataFrame) else pd.DataFrame(request_inputs)
        rows, is_2d = _prediction_rows(request_predictions, len(frame), str(request_id))
        if len(frame) == 0:
            continue
        two_d = two_d or is_2d
        ids.append(str(request_id))
        ts.append(float(t))
        versions.append(str(version))
        latencies.append(float(latency_ms))
        statuses.append(int(status))
        counts.append(len(frame))
        inputs.append(frame)
        predictions.append(rows)
    if not counts:
        return _empty_frame(with_prediction=True)
    data = inputs[0].reset_index(drop=True) if len(inputs) == 1 else pd.concat(inputs, ignore_index=True)
    if two_d:
        values: list[Any] = []
        for rows in predictions:
            values.extend(rows if isinstance(rows, list) else rows.tolist())
        prediction = pd.Series(values, dtype=object, name=PREDICTION)
    elif len(predictions) == 1:
        prediction = pd.Series(predictions[0], name=PREDICTION)
    else:
        prediction = pd.concat([pd.Series(p) for p in predictions], ignore_index=True).rename(PREDICTION)
    return _rows_frame(list(zip(ids, ts, versions, latencies, statuses, strict=True)), counts, data, prediction)


RequestMeta = tuple[str, float, str, float, int]
"""``(request_id, t, version, latency_ms, status)`` of one captured request."""


def capture_block(
    requests: Sequence[RequestMeta], counts: Sequence[int] | np.ndarray, inputs: pd.DataFrame, predictions: Any
) -> pd.DataFrame:
    """The captured rows of consecutive requests whose inputs are already stacked into one table: the cheapest way
    in, one frame for a whole batch of requests (what the Monitor builds from a replica's samples).

    Args:
        requests: Each request's metadata, in the order of its rows in ``inputs``.
        counts: Rows of each request (``sum(counts) == len(inputs)``).
        inputs: The requests' input rows, stacked.
        predictions: Their outputs stacked the same way (one per row, or one row of values per row), or None when
            none are kept (the prediction column is then empty).

    Raises:
        ValueError: When the rows do not add up.

    Example:
        >>> capture_block([("r1", t, "3", 2.5, 200), ("r2", t, "3", 2.1, 200)], [2, 1], frame3, np.array([0, 1, 1]))
    """
    total = int(sum(counts))
    if len(inputs) != total or len(requests) != len(counts):
        raise ValueError(f"{len(requests)} requests with {total} rows in all, and {len(inputs)} input rows")
    if predictions is None:
        prediction = pd.Series([None] * total, dtype=object, name=PREDICTION)
    else:
        rows, two_d = _prediction_rows(predictions, total, "(a block of requests)")
        prediction = pd.Series(rows, dtype=object if two_d else None, name=PREDICTION)
    return _rows_frame(requests, counts, inputs.reset_index(drop=True), prediction)


def _rows_frame(
    requests: Sequence[RequestMeta], counts: Sequence[int] | np.ndarray, data: pd.DataFrame, prediction: pd.Series
) -> pd.DataFrame:
    """The captured row format: each request's metadata repeated over its rows, its inputs and its predictions."""
    n = np.asarray(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    total = int(n.sum())
    ids, ts, versions, latencies, statuses = zip(*requests, strict=True)
    meta = pd.DataFrame(
        {
            "request_id": np.repeat(np.asarray([str(i) for i in ids], dtype=object), n),
            "row": np.arange(total, dtype=np.int64) - np.repeat(starts, n),
            "t": np.repeat(np.asarray(ts, dtype=np.float64), n),
            "version": np.repeat(np.asarray([str(v) for v in versions], dtype=object), n),
            "latency_ms": np.repeat(np.asarray(latencies, dtype=np.float64), n),
            "status": np.repeat(np.asarray(statuses, dtype=np.int64), n),
        }
    )
    data = data.rename(columns={c: f"{INPUT_PREFIX}{c}" for c in data.columns if c in RESERVED_COLUMNS})
    return pd.concat([meta, data, prediction], axis=1)


def _prediction_rows(predictions: Any, n: int, request_id: str) -> tuple[Any, bool]:
    """Per-row predictions: a 1-D array of scalars, or a list of float lists for 2-D outputs."""
    values = predictions.to_numpy() if isinstance(predictions, (pd.DataFrame, pd.Series)) else predictions
    array = np.asarray(values)
    if array.ndim == 0:
        array = array.reshape(1)
    if len(array) != n:
        raise ValueError(f"request {request_id!r}: {len(array)} predictions for {n} input rows; send one per row")
    if array.ndim == 1:
        return array, False
    if array.ndim == 2 and array.shape[1] == 1:
        return array[:, 0], False
    return array.reshape(n, -1).astype(np.float64).tolist(), True


def _empty_frame(with_prediction: bool = False, with_label: bool = False) -> pd.DataFrame:
    columns: dict[str, pd.Series] = {c: pd.Series(dtype=d) for c, d in _META_DTYPES.items()}
    if with_prediction:
        columns[PREDICTION] = pd.Series(dtype=object)
    if with_label:
        columns[LABEL] = pd.Series(dtype=object)
    return pd.DataFrame(columns)


# ---------------------------------------------------------------------------------------------------------------
# Pseudonyms and exclusions (used in the replica, before data leaves it)


def pseudonymize(frame: pd.DataFrame, columns: Sequence[str], salt: str) -> pd.DataFrame:
    """A copy of ``frame`` whose ``columns`` hold salted digests: HMAC-SHA256 of ``str(value)``, 32 hex chars.

    The same value and salt always give the same digest (pseudonyms still join and count); another salt gives
    another digest. Nulls stay null; listed columns that the frame lacks are ignored.

    Args:
        frame: Model input rows.
        columns: Columns to replace by their digests.
        salt: The deployment's secret key for the HMAC; must not be empty.

    Returns:
        A new frame; ``frame`` is left unchanged.

    Raises:
        ValueError: When ``salt`` is empty.

    Example:
        >>> pseudonymize(pd.DataFrame({"email": ["a@b.c", None]}), ["email"], salt="s3cret")["email"].tolist()
        ['5d682d96be979f9e624bac5d55d5a55d', None]
    """
    if not salt:
        raise ValueError("pseudonymize needs a non-empty salt (the deployment's secret key)")
    key = salt.encode()
    out = frame.copy()
    for column in columns:
        if column not in out.columns:
            continue
        series = out[column]
        nulls = series.isna().tolist()
        digests = [
            None if null else hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()[:32]
            for value, null in zip(series.tolist(), nulls, strict=True)
        ]
        out[column] = pd.Series(digests, index=out.index, dtype=object)
    return out


def drop_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """A copy of ``frame`` without ``columns`` (listed columns that it lacks are ignored).

    Example:
        >>> drop_columns(pd.DataFrame({"x": [1], "email": ["a@b.c"]}), ["email", "phone"]).columns.tolist()
        ['x']
    """
    return frame.drop(columns=[c for c in columns if c in frame.columns])


# ---------------------------------------------------------------------------------------------------------------
# The store


def _hour_label(hour: int) -> str:
    return datetime.fromtimestamp(hour * _HOUR_S, tz=timezone.utc).strftime(_HOUR_FORMAT)


def _hour_of(label: str) -> int | None:
    """Hour number (``t // 3600``) of an ``hour=<...>`` folder value, or None for a foreign folder."""
    try:
        return int(datetime.strptime(label, _HOUR_FORMAT).replace(tzinfo=timezone.utc).timestamp()) // _HOUR_S
    except ValueError:
        return None


def _to_table(frame: pd.DataFrame) -> pa.Table:
    """A pyarrow table of ``frame``; object columns pyarrow cannot type (mixed values) are stored as strings."""
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except _ARROW_ERRORS:
        fixed = frame.copy()
        for column in fixed.columns:
            try:
                pa.array(fixed[column], from_pandas=True)
            except _ARROW_ERRORS:
                log.warning("captured column %r has mixed types; storing it as strings", column)
                fixed[column] = [None if _is_null(v) else str(v) for v in fixed[column].tolist()]
        return pa.Table.from_pandas(fixed, preserve_index=False)


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _concat(tables: list[pa.Table]) -> pd.DataFrame:
    """Tables with possibly different columns and types as one frame (the union of the columns)."""
    if not tables:
        return pd.DataFrame()
    try:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except _ARROW_ERRORS:
        frames = [t.to_pandas() for t in tables if t.num_rows]
        return pd.concat(frames, ignore_index=True) if frames else tables[0].to_pandas()


class CaptureStore:
    """Captured requests and labels of one deployment, as Parquet under ``<root>/<name>/``.

    Safe to share between threads of one process (writes, erasure and expiry take a lock); readers never see a
    partly written file. Write in batches (one call per Monitor flush, not per request): every call writes one
    file per (version, hour) it touches.

    Example:
        >>> store = CaptureStore("s3://bucket/captures", "churn")
        >>> store.read(since=time.time() - 3600, limit=1000)
    """

    def __init__(self, root: str, name: str) -> None:
        """Open (nothing is created until the first write) the store of deployment ``name`` under ``root``.

        Args:
            root: Local folder (absolute or relative, no scheme needed) or pyarrow filesystem URI.
            name: Deployment name; its folder under ``root``.

        Raises:
            ValueError: When ``name`` is empty.

        Example:
            >>> CaptureStore("file:///tmp/captures", "iris").base
            '/tmp/captures/iris'
        """
        if not name:
            raise ValueError("a capture store needs a deployment name")
        if "://" in root:
            fs, path = pafs.FileSystem.from_uri(root)
        else:
            fs, path = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(root))
        self.fs: pafs.FileSystem = fs
        self.base = f"{path.rstrip('/')}/{quote(name, safe='')}"
        self._lock = threading.Lock()

    @property
    def _captures(self) -> str:
        return f"{self.base}/captures"

    @property
    def _labels(self) -> str:
        return f"{self.base}/labels"

    # -- listing ---------------------------------------------------------------------------------------------

    def _children(self, path: str, kind: pafs.FileType) -> list[pafs.FileInfo]:
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return [i for i in infos if i.type == kind and not i.base_name.startswith((".", "_"))]

    def _hour_dirs(self, path: str) -> dict[int, str]:
        """``hour=`` folders directly under ``path`` by hour number."""
        hours = {}
        for info in self._children(path, pafs.FileType.Directory):
            key, _, value = info.base_name.partition("=")
            hour = _hour_of(value) if key == "hour" else None
            if hour is not None:
                hours[hour] = info.path
        return hours

    def _version_dirs(self) -> dict[str, str]:
        versions = {}
        for info in self._children(self._captures, pafs.FileType.Directory):
            key, _, value = info.base_name.partition("=")
            if key == "version":
                versions[unquote(value)] = info.path
        return versions

    def _files(self, path: str) -> list[pafs.FileInfo]:
        return [
            i
            for i in self._children(path, pafs.FileType.File)
            if i.base_name.startswith("part-") and i.base_name.endswith(".parquet")
        ]

    def _capture_files(
        self, since: float | None = None, until: float | None = None, version: str | None = None
    ) -> dict[int, list[str]]:
        """Capture files by hour number, pruned by folder to the hours that can hold ``since <= t < until``."""
        versions = self._version_dirs()
        if version is not None:
            versions = {version: versions[version]} if version in versions else {}
        by_hour: dict[int, list[str]] = {}
        for vdir in versions.values():
            for hour, hdir in self._hour_dirs(vdir).items():
                if _hour_in(hour, since, until):
                    by_hour.setdefault(hour, []).extend(f.path for f in self._files(hdir))
        return by_hour

    def _label_files(self, since: float | None = None) -> list[str]:
        return [
            f.path
            for hour, hdir in sorted(self._hour_dirs(self._labels).items())
            if _hour_in(hour, since, None)
            for f in self._files(hdir)
        ]

    # -- file I/O --------------------------------------------------------------------------------------------

    def _read_file(self, path: str, columns: list[str] | None = None) -> pa.Table:
        """One file's table; an empty table when it vanished since listing (expired or erased meanwhile)."""
        try:
            with self.fs.open_input_file(path) as handle:
                return pq.read_table(handle, columns=columns)
        except FileNotFoundError:
            return pa.table({c: pa.array([], type=pa.string()) for c in columns or ["request_id"]})

    def _write_file(self, directory: str, table: pa.Table, path: str | None = None) -> str:
        """Write ``table`` under a hidden temporary name and rename it to ``path`` (a new part file by default)."""
        self.fs.create_dir(directory, recursive=True)
        token = uuid.uuid4().hex
        final = path or f"{directory}/part-{token}.parquet"
        temporary = f"{directory}/.tmp-{token}.parquet"
        try:
            pq.write_table(table, temporary, filesystem=self.fs)
            self.fs.move(temporary, final)
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(temporary)
            raise
        return final

    # -- captures --------------------------------------------------------------------------------------------

    def write(self, frame: pd.DataFrame) -> int:
        """Persist captured rows: one new file per (version, UTC hour of ``t``) in the frame.

        Input columns that are null on every row of a version are not written for that version (a batch that
        mixes versions with different inputs does not widen every file).

        Args:
            frame: Rows in the captured row format (:func:`capture_batch`).

        Returns:
            Rows written.

        Raises:
            ValueError: When a metadata column is missing.

        Example:
            >>> store.write(capture_batch(requests))
            128
        """
        if frame.empty:
            return 0
        missing = [c for c in META_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"captured rows lack the columns {missing}; build them with capture_batch()")
        frame = frame.reset_index(drop=True).astype(
            {"request_id": str, "version": str, "row": "int64", "t": "float64", "latency_ms": "float64"}
        )
        frame["status"] = frame["status"].astype("int64")
        hours = np.floor(frame["t"].to_numpy() / _HOUR_S).astype(np.int64)
        groups = frame.groupby([frame["version"], pd.Series(hours)], sort=False).indices
        inputs = [c for c in frame.columns if c not in META_COLUMNS and c != PREDICTION]
        written = 0
        with self._lock:
            for (version, hour), positions in groups.items():
                part = frame.iloc[positions]
                nulls = part[inputs].isna().all() if inputs else pd.Series(dtype=bool)  # one vectorized pass
                empty = [c for c in inputs if nulls[c]]
                table = _to_table(part.drop(columns=empty) if empty else part)
                directory = f"{self._captures}/version={quote(str(version), safe='')}/hour={_hour_label(int(hour))}"
                self._write_file(directory, table)
                written += table.num_rows
        return written

    def read(
        self,
        since: float | None = None,
        until: float | None = None,
        version: str | None = None,
        limit: int | None = None,
        with_labels: bool = True,
    ) -> pd.DataFrame:
        """Captured rows with ``since <= t < until``, sorted by ``t``, optionally the newest ``limit`` only.

        Only the folders of the asked version and hours are opened; with ``limit``, hours are read newest first
        and reading stops once enough rows are in.

        Args:
            since: Earliest ``t`` (inclusive), or None for no bound.
            until: Latest ``t`` (exclusive), or None for no bound.
            version: Only this version's rows.
            limit: Only the newest this many rows.
            with_labels: Add a ``label`` column: the latest label of each (request_id, row), null when none.

        Returns:
            The rows (union of the columns of every file read); an empty store gives an empty frame with the
            metadata columns.

        Example:
            >>> store.read(since=time.time() - 600, version="3", limit=500)["prediction"].mean()
            0.42
        """
        by_hour = self._capture_files(since, until, version)
        tables: list[pa.Table] = []
        rows = 0
        for hour in sorted(by_hour, reverse=True):
            for path in by_hour[hour]:
                table = self._read_file(path)
                if not table.num_rows:
                    continue
                table = _filter_t(table, since, until)
                if table.num_rows:
                    tables.append(table)
                    rows += table.num_rows
            if limit is not None and rows >= limit:
                break
        if not tables:
            return _empty_frame(with_prediction=True, with_label=with_labels)
        frame = _ordered(_concat(tables)).sort_values(["t", "request_id", "row"], kind="stable")
        if limit is not None:
            frame = frame.tail(limit)
        frame = frame.reset_index(drop=True)
        if with_labels:
            frame = self._join_labels(frame, since)
        return frame

    def lookup(self, request_ids: Iterable[str], since: float | None = None, with_labels: bool = False) -> pd.DataFrame:
        """The captured rows of these request ids (every version that answered them), sorted by ``t``.

        Used to join labels for requests older than the Monitor's memory. Reads the ``request_id`` column of
        every file (or of the hours from ``since`` on), and the whole file only where an id matches.

        Args:
            request_ids: The ids to find.
            since: Skip hour folders entirely before this time.
            with_labels: Add the ``label`` column as :meth:`read` does.

        Returns:
            Their rows; empty (metadata columns only) when none is stored.

        Example:
            >>> store.lookup(["r1", "r9"])[["request_id", "row", "prediction"]].values.tolist()
            [['r1', 0, 1]]
        """
        wanted = pa.array(sorted({str(i) for i in request_ids}), type=pa.string())
        tables = []
        if len(wanted):
            for paths in self._capture_files(since=since).values():
                for path in paths:
                    table = self._matching(path, wanted)
                    if table is not None and table.num_rows:
                        tables.append(table)
        if not tables:
            return _empty_frame(with_prediction=True, with_label=with_labels)
        frame = _ordered(_concat(tables)).sort_values(["t", "request_id", "row"], kind="stable")
        frame = frame.reset_index(drop=True)
        return self._join_labels(frame, None) if with_labels else frame

    def _matching(self, path: str, wanted: pa.Array, keep: bool = True) -> pa.Table | None:
        """The rows of a file whose request_id is (``keep``) or is not in ``wanted``; None when no id matches."""
        ids = self._read_file(path, columns=["request_id"]).column("request_id")
        if not len(ids):
            return None
        hits = pc.is_in(ids, value_set=wanted)
        if not pc.any(hits).as_py():
            return None
        table = self._read_file(path)
        if table.num_rows != len(ids):
            return None  # replaced since the first read; the caller's next pass sees the new file
        return table.filter(hits if keep else pc.invert(hits))

    # -- labels ----------------------------------------------------------------------------------------------

    def write_labels(self, request_ids: Sequence[str], rows: Sequence[int], labels: Sequence[Any], t: float) -> int:
        """Persist ground-truth labels, one per (request_id, row), received at time ``t``.

        A later label of the same (request_id, row) wins when reading. Labels are JSON scalars; a call that mixes
        strings and numbers stores them all as strings.

        Args:
            request_ids: The request of each label.
            rows: The row within its request (0 for a one-row request).
            labels: The labels.
            t: When the labels arrived, seconds since the epoch.

        Returns:
            Labels written.

        Raises:
            ValueError: When the three lists differ in length.

        Example:
            >>> store.write_labels(["r1", "r2"], [0, 0], [1, 0], t=time.time())
            2
        """
        if not len(request_ids) == len(rows) == len(labels):
            raise ValueError(
                f"write_labels got {len(request_ids)} request ids, {len(rows)} rows and {len(labels)} labels;"
                " send one of each per label"
            )
        if not request_ids:
            return 0
        frame = pd.DataFrame(
            {
                "request_id": pd.Series([str(i) for i in request_ids], dtype=object),
                "row": np.asarray(rows, dtype=np.int64),
                "label": pd.Series(list(labels), dtype=object),
                "t": np.full(len(request_ids), float(t)),
            }
        )
        table = _to_table(frame)
        hour = math.floor(float(t) / _HOUR_S)
        with self._lock:
            self._write_file(f"{self._labels}/hour={_hour_label(hour)}", table)
        return table.num_rows

    def labels(self, since: float | None = None, request_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """The latest label of each (request_id, row): columns ``request_id, row, label, t``.

        Args:
            since: Skip label hours entirely before this time (labels arrive after their prediction).
            request_ids: Only these requests.

        Returns:
            One row per labelled (request_id, row).

        Example:
            >>> store.labels(request_ids=["r1"]).values.tolist()
            [['r1', 0, 1, 1700000100.0]]
        """
        wanted = None if request_ids is None else pa.array(sorted({str(i) for i in request_ids}), type=pa.string())
        tables = []
        for path in self._label_files(since):
            table = self._read_file(path)
            if not table.num_rows:
                continue
            if wanted is not None:
                table = table.filter(pc.is_in(table.column("request_id"), value_set=wanted))
            if table.num_rows:
                tables.append(table)
        if not tables:
            dtypes = ("object", "int64", "object", "float64")
            return pd.DataFrame({c: pd.Series(dtype=d) for c, d in zip(LABEL_COLUMNS, dtypes, strict=True)})
        frame = _concat(tables).sort_values("t", kind="stable")
        frame = frame.drop_duplicates(["request_id", "row"], keep="last")
        return frame[list(LABEL_COLUMNS)].reset_index(drop=True)

    def _join_labels(self, frame: pd.DataFrame, since: float | None) -> pd.DataFrame:
        if frame.empty:
            out = frame.copy()
            out[LABEL] = pd.Series(dtype=object)
            return out
        # labels arrive after their prediction; an hour of slack covers clocks that disagree
        labels = self.labels(None if since is None else since - _HOUR_S, frame["request_id"].unique().tolist())
        return frame.merge(labels[["request_id", "row", LABEL]], on=["request_id", "row"], how="left")

    # -- erasure and retention -------------------------------------------------------------------------------

    def erase(self, request_ids: Iterable[str]) -> int:
        """Remove every captured row and label of these request ids (GDPR erasure), in every version and hour.

        Each file holding one of the ids is rewritten without them (atomically, under the same name); a file
        left empty is deleted.

        Args:
            request_ids: The requests to forget.

        Returns:
            Rows removed, captured rows and label rows together.

        Example:
            >>> store.erase(["r1"])
            3
        """
        wanted = pa.array(sorted({str(i) for i in request_ids}), type=pa.string())
        if not len(wanted):
            return 0
        removed = 0
        with self._lock:
            paths = [p for ps in self._capture_files().values() for p in ps] + self._label_files()
            for path in paths:
                rows = self._read_file(path, columns=["request_id"]).num_rows
                kept = self._matching(path, wanted, keep=False)
                if kept is None:
                    continue
                removed += rows - kept.num_rows
                if kept.num_rows:
                    self._write_file(path.rsplit("/", 1)[0], kept, path=path)
                else:
                    self.fs.delete_file(path)
        log.info("erased %d rows of %d request ids under %s", removed, len(wanted), self.base)
        return removed

    def expire(self, now: float, retention_days: float) -> int:
        """Delete every hour folder (captures and labels) that ended more than ``retention_days`` before ``now``.

        Args:
            now: Current time, seconds since the epoch.
            retention_days: ``CaptureSpec.retention_days``.

        Returns:
            Files deleted.

        Example:
            >>> store.expire(time.time(), retention_days=30)
            12
        """
        cutoff = now - retention_days * 86_400
        deleted = 0
        with self._lock:
            parents = [*self._version_dirs().values(), self._labels]
            for parent in parents:
                for hour, hdir in self._hour_dirs(parent).items():
                    if (hour + 1) * _HOUR_S <= cutoff:
                        deleted += len(self._children(hdir, pafs.FileType.File))
                        self.fs.delete_dir(hdir)
            for vdir in self._version_dirs().values():
                if not self.fs.get_file_info(pafs.FileSelector(vdir, allow_not_found=True)):
                    self.fs.delete_dir(vdir)
        return deleted

    def clear(self) -> None:
        """Delete everything captured for this deployment (captures and labels), e.g. before a demo tells its story
        again under the same name.

        Example:
            >>> store.clear(); store.read().empty
            True
        """
        with self._lock:
            if self.fs.get_file_info(self.base).type != pafs.FileType.NotFound:
                self.fs.delete_dir(self.base)

    def size(self) -> dict[str, int]:
        """Files and bytes stored, from one listing (no file is opened).

        Example:
            >>> store.size()
            {'capture_files': 3, 'capture_bytes': 18230, 'label_files': 1, 'label_bytes': 1022}
        """
        out = {}
        for kind, path in (("capture", self._captures), ("label", self._labels)):
            infos = self.fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
            files = [i for i in infos if i.type == pafs.FileType.File and i.base_name.startswith("part-")]
            out[f"{kind}_files"] = len(files)
            out[f"{kind}_bytes"] = sum(i.size or 0 for i in files)
        return out


def _hour_in(hour: int, since: float | None, until: float | None) -> bool:
    """Whether hour number ``hour`` can hold a ``t`` with ``since <= t < until``."""
    return (since is None or (hour + 1) * _HOUR_S > since) and (until is None or hour * _HOUR_S < until)


def _filter_t(table: pa.Table, since: float | None, until: float | None) -> pa.Table:
    if since is not None:
        table = table.filter(pc.greater_equal(table.column("t"), since))
    if until is not None:
        table = table.filter(pc.less(table.column("t"), until))
    return table


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Metadata columns first, ``prediction`` (and ``label``) last, inputs in between in first-seen order."""
    head = [c for c in META_COLUMNS if c in frame.columns]
    tail = [c for c in (PREDICTION, LABEL) if c in frame.columns]
    middle = [c for c in frame.columns if c not in head and c not in tail]
    return frame[head + middle + tail]

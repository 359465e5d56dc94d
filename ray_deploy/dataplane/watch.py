"""``ModelWatch``: the Monitor's monitoring state of one deployment: capture, drift, quality and labels.

The Monitor hands it every batch of samples (in a worker thread, never on the request path or a status
read). Captured rows go to the Parquet store and the label join; rows of the serving version feed the open
drift window, summarized on the reference's bins so memory stays bounded. When a window closes (by rows, or
by time with enough rows) it is compared with the reference, the alarm takes a step (with hysteresis), and a
change of alarm level becomes an event with its evidence. The status document's ``drift``, ``quality`` and
``performance`` sections are read from here without computing anything.

Example:
    >>> watch = ModelWatch("iris", CaptureStore(root, "iris"))
    >>> watch.configure("3", DriftSpec(), reference=(frame, predictions))
    >>> events = watch.ingest(samples, now=time.time())
    >>> watch.drift_section()["state"]
    'collecting'
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ray_deploy.config import DriftSpec
from ray_deploy.status import Sample

TREND_WINDOWS = 50
MAX_EVENTS = 200
# captured rows are written in batches: fewer, larger Parquet files and less Monitor CPU per request
WRITE_EVERY_S = 5.0
WRITE_ROWS = 20_000


@dataclass
class _Quality:
    """Data-quality counters: per field and kind, plus requests rejected by validation."""

    fields: dict[str, Counter[str]] = field(default_factory=dict)
    rejected: int = 0
    rejected_by_field: Counter[str] = field(default_factory=Counter)

    def add_window(self, window_quality: dict[str, dict[str, int]]) -> None:
        for name, counts in window_quality.items():
            self.fields.setdefault(name, Counter()).update(counts)

    def reject(self, field_name: str | None) -> None:
        self.rejected += 1
        name = field_name or "(request)"
        self.rejected_by_field[name] += 1
        self.fields.setdefault(name, Counter())["type_violations"] += 1

    def as_fields(self) -> dict[str, dict[str, int]]:
        kinds = ("missing", "type_violations", "out_of_range", "unseen_categories")
        return {name: {k: int(counts.get(k, 0)) for k in kinds} for name, counts in sorted(self.fields.items())}


class ModelWatch:
    """Monitoring state of one deployment; thread-safe (one lock), driven by the Monitor."""

    def __init__(self, name: str, store: Any, label_join: Any = None) -> None:
        from ray_deploy.performance import LabelJoin

        self.name = name
        self.store = store
        self.labels = label_join if label_join is not None else LabelJoin()
        self.spec = DriftSpec()
        self.version: str | None = None
        self.profile: Any = None
        self.reference_rows = 0
        self.window: Any = None
        self.windows = 0
        self.last: Any = None  # the last closed window's result
        self.last_histograms: dict[str, Any] = {}
        self.last_quality: dict[str, dict[str, int]] = {}
        self.trend: deque[dict[str, Any]] = deque(maxlen=TREND_WINDOWS)
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.totals = _Quality()
        self._window_rejected = _Quality()
        self._alarm: Any = None
        self._seq = 0
        self._unwritten: list[Any] = []
        self._unwritten_rows = 0
        self._written_at = 0.0
        self._lock = threading.Lock()

    # ---- configuration -----------------------------------------------------------------------------

    def configure(self, version: str, spec: DriftSpec, reference: tuple[Any, Any] | None, now: float) -> None:
        """Watch ``version`` against its reference (frame, predictions), or without one (no drift verdict)."""
        from ray_deploy.alarms import AlarmState
        from ray_deploy.drift import ReferenceProfile

        profile = None if reference is None else ReferenceProfile.build(reference[0], reference[1], spec)
        with self._lock:
            changed = version != self.version
            self.version, self.spec, self.profile = version, spec, profile
            self.reference_rows = 0 if reference is None else len(reference[0])
            if changed or self._alarm is None:
                self._alarm = AlarmState()
            self.window = None if profile is None else self._new_window(now)

    def _new_window(self, now: float) -> Any:
        from ray_deploy.drift import WindowSummary

        self._window_rejected = _Quality()
        return WindowSummary(self.profile, self.spec, now, seed=self.windows)

    # ---- traffic ------------------------------------------------------------------------------------

    def ingest(self, samples: list[Sample], now: float) -> list[dict[str, Any]]:
        """Take a batch of samples: store captured rows, feed the window; returns alarm events it caused.

        Consecutive samples whose inputs stack (arrays of one width, or tables of the same columns) are handled as
        one block: one table for the store and one window update per block, not per request (a window update
        costs about the same for one row as for a thousand).
        """
        import pandas as pd

        blocks = stack_samples([s for s in samples if s.captured and not s.shadow])
        with self._lock:
            for s in samples:
                if s.status == 422:
                    self.totals.reject(s.rejected_field)
                    self._window_rejected.reject(s.rejected_field)
            if blocks:
                tables = [block.rows() for block in blocks]
                rows = tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True, sort=False)
                self._unwritten.append(rows)
                self._unwritten_rows += len(rows)
                self.labels.add_predictions(rows)
                if self._unwritten_rows >= WRITE_ROWS or now - self._written_at >= WRITE_EVERY_S:
                    self._write(now)
            events: list[dict[str, Any]] = []
            for block in blocks:
                if block.version == self.version:
                    events += self._feed_window(block, now)
            return events + self._maybe_close(now)

    def _feed_window(self, block: SampleBlock, now: float) -> list[dict[str, Any]]:
        """Add a block's rows to the open window in as few parts as the window allows: a window closes at the
        first request that brings it to the rows it needs (``WindowSummary.rows_to_close``), exactly as if the
        requests were added one by one, and the rest go to the next window."""
        events: list[dict[str, Any]] = []
        ends = np.cumsum(block.counts)
        first, start = 0, 0  # the next request of the block, and its first row
        while self.window is not None and first < len(ends):
            window = self.window
            last = min(int(np.searchsorted(ends - start, max(window.rows_to_close(now), 1))), len(ends) - 1)
            end = int(ends[last])
            outputs = None if block.outputs is None else block.outputs[start:end]
            window.add(block.inputs.iloc[start:end], outputs, block.samples[last].t)
            events += self._maybe_close(now)
            first, start = last + 1, end
        return events

    def tick(self, now: float) -> list[dict[str, Any]]:
        """Close the open window when its time is up and write captured rows when due (called every second)."""
        with self._lock:
            if self._unwritten and now - self._written_at >= WRITE_EVERY_S:
                self._write(now)
            return self._maybe_close(now)

    def write_pending(self, now: float) -> None:
        """Write every captured row held in memory now (before a read, an erasure or a label lookup)."""
        with self._lock:
            self._write(now)

    def _write(self, now: float) -> None:
        self._written_at = now
        if not self._unwritten:
            return
        import pandas as pd

        frames, self._unwritten, self._unwritten_rows = self._unwritten, [], 0
        self.store.write(frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True, sort=False))

    def _maybe_close(self, now: float) -> list[dict[str, Any]]:
        if self.window is None or not self.window.ready(now):
            return []
        from ray_deploy.alarms import alarm_event, next_alarm
        from ray_deploy.drift import compare, histograms, trend_point

        result = compare(self.profile, self.window, self.spec)
        self.last, self.last_histograms = result, histograms(self.profile, self.window)
        quality = {name: dict(counts) for name, counts in result.quality.items()}
        for name, counts in self._window_rejected.as_fields().items():
            quality.setdefault(name, {}).update(type_violations=counts["type_violations"])
        self.last_quality = quality
        self.totals.add_window({k: {c: v for c, v in q.items() if c != "type_violations"} for k, q in quality.items()})
        previous = self._alarm
        self._alarm = next_alarm(previous, result.drifted, self.spec)
        self.trend.append(trend_point(result, self._alarm.level))
        self.windows += 1
        self.window = self._new_window(now)
        if self._alarm.level == previous.level:
            return []
        self._seq += 1
        event = alarm_event(self._seq, now, previous, self._alarm, result, self.version)
        self.events.append(event)
        return [event]

    # ---- labels, erasure, retention ---------------------------------------------------------------------

    def feedback(self, request_ids: Any, labels: Any, now: float) -> dict[str, Any]:
        """Join labels to captured predictions by request id; ids never captured are reported back."""
        from ray_deploy.performance import expand_labels, validate_feedback

        ids, values = validate_feedback(request_ids, labels)
        with self._lock:
            self._write(now)
            missing = self.labels.missing(ids)  # older than the join's memory: look them up in the store
            captured = self.store.lookup(missing) if missing else None
            joined, unknown = self.labels.add_labels(ids, values, now, captured=captured)
            known = [(i, v) for i, v in zip(ids, values, strict=True) if i not in set(unknown)]
            if known:
                self.store.write_labels(*expand_labels([i for i, _ in known], [v for _, v in known]), now)
        return {"joined": joined, "unknown_ids": unknown}

    def erase(self, request_ids: list[str]) -> int:
        """Delete every captured row and label of these requests (an erasure request); returns rows removed."""
        with self._lock:
            self._write(self._written_at)
            removed = int(self.store.erase(request_ids))
            forget = getattr(self.labels, "forget", None)
            if forget is not None:
                forget(request_ids)
            return removed

    def expire(self, now: float, retention_days: float) -> int:
        """Delete captured data older than the retention; returns files deleted."""
        with self._lock:
            return int(self.store.expire(now, retention_days))

    # ---- what the status document shows -------------------------------------------------------------------

    def drift_section(self) -> dict[str, Any]:
        """The status document's ``drift`` section (a read: nothing is computed)."""
        with self._lock:
            return self._section(self.last, self.window.rows if self.window is not None else 0)

    def _section(self, result: Any, open_rows: int) -> dict[str, Any]:
        if self.profile is None:
            state, message = (
                "no_reference",
                ("no reference data: deploy with reference=X_train (or a sample_input of 100+ rows) to measure drift"),
            )
        elif result is None:
            state = "collecting"
            message = f"collecting the first window: {open_rows} of {self.spec.window_rows} rows"
        else:
            state = self._alarm.level
            drifted = result.drifted_features
            message = (f"drift in {', '.join(drifted)}" if drifted else "no feature drifted in the last window") + (
                f"; domain classifier AUC {result.auc:.2f}" if result.auc is not None else ""
            )
        return {
            "state": state,
            "message": message,
            "version": self.version,
            "reference_rows": self.reference_rows,
            "window_rows": open_rows,
            "windows": self.windows,
            "last_window_end": None if result is None else result.end,
            "drifted": None if result is None else bool(result.drifted),
            "drifted_features": [] if result is None else list(result.drifted_features),
            "auc": None if result is None else result.auc,
            "features": [] if result is None else list(result.features),
            "trend": list(self.trend),
            "last_alarm": self.events[-1] if self.events else None,
        }

    def quality_section(self) -> dict[str, Any]:
        """The status document's ``quality`` section."""
        with self._lock:
            kinds = ("missing", "type_violations", "out_of_range", "unseen_categories")
            window = {n: {k: int(q.get(k, 0)) for k in kinds} for n, q in sorted(self.last_quality.items())}
            return {
                "rows": 0 if self.last is None else int(self.last.rows),
                "rejected_requests": self.totals.rejected,
                "rejected_by_field": dict(sorted(self.totals.rejected_by_field.items())),
                "fields": window,
                "totals": self.totals.as_fields(),
            }

    def performance_section(self, now: float) -> dict[str, Any] | None:
        """The status document's ``performance`` section, or None before any label arrived."""
        with self._lock:
            section: dict[str, Any] = self.labels.section(now, self.version)
            return section if section.get("labelled") or section.get("unknown_ids") else None

    def alarms(self, since_seq: int = 0) -> list[dict[str, Any]]:
        """Alarm events after ``since_seq``, oldest first."""
        with self._lock:
            return [e for e in self.events if e["seq"] > since_seq]

    # ---- reports on demand --------------------------------------------------------------------------

    def report(self, window_rows: int | None, now: float) -> dict[str, Any]:
        """The drift report document: the last closed window, or the last ``window_rows`` captured rows."""
        if window_rows is None or self.profile is None:
            with self._lock:
                return {
                    "section": self._section(self.last, self.window.rows if self.window else 0),
                    "histograms": self.last_histograms,
                }
        from ray_deploy.drift import WindowSummary, compare, histograms

        with self._lock:
            self._write(now)
            profile, spec, version = self.profile, self.spec, self.version
        rows = self.store.read(version=version, limit=window_rows, with_labels=False)
        if not len(rows):
            with self._lock:
                return {"section": self._section(None, 0), "histograms": {}}
        window = WindowSummary(profile, spec, float(rows["t"].min()))
        inputs = rows[[c for c in profile.inputs if c in rows.columns]]
        window.add(inputs, _predictions(rows), float(rows["t"].max()))
        result = compare(profile, window, spec)
        with self._lock:
            section = self._section(result, self.window.rows if self.window else 0)
        return {"section": section, "histograms": histograms(profile, window)}


def _predictions(rows: Any) -> Any:
    import numpy as np

    if "prediction" not in rows.columns:
        return None
    values = rows["prediction"].tolist()
    if values and isinstance(values[0], (list, np.ndarray)):
        return np.asarray([np.asarray(v) for v in values])
    return np.asarray(values)


@dataclass
class SampleBlock:
    """Consecutive captured samples of one version whose inputs stack into one table, and their outputs into one
    array (None when some sample has no output per input row)."""

    samples: list[Sample]
    inputs: Any
    outputs: Any
    counts: np.ndarray

    @property
    def version(self) -> str | None:
        return self.samples[0].version

    def rows(self) -> Any:
        """The block in the captured row format (:func:`ray_deploy.capture_store.capture_block`)."""
        from ray_deploy.capture_store import capture_block

        requests = [(s.request_id, s.t, s.version or "", s.latency_ms, s.status) for s in self.samples]
        return capture_block(requests, self.counts, self.inputs, self.outputs)


def stack_samples(samples: list[Sample]) -> list[SampleBlock]:
    """Captured samples as blocks: runs of consecutive samples of one version whose inputs are arrays of one width
    (stacked into columns ``x0``, ``x1``, ... as :func:`~ray_deploy.dataplane.capture.input_frame` names them) or
    tables with the same columns, and whose outputs (one per input row) stack too. Inputs that are not a table
    (deeper or wider tensors) are left out, as they are not captured.

    Example:
        >>> [len(b.samples) for b in stack_samples([s1, s2, s3])]  # s3 has other columns
        [2, 1]
    """
    from ray_deploy.dataplane.capture import table_input

    blocks: list[SampleBlock] = []
    run: list[tuple[Sample, Any, Any]] = []
    run_key: Any = None
    for sample in samples:
        inputs = table_input(sample.inputs)
        if inputs is None:
            continue
        outputs = _outputs_per_row(sample.outputs, len(inputs))
        key = (sample.version, _stack_key(inputs), None if outputs is None else (outputs.ndim, outputs.shape[1:]))
        if run and key != run_key:
            blocks.append(_block(run))
            run = []
        run.append((sample, inputs, outputs))
        run_key = key
    if run:
        blocks.append(_block(run))
    return blocks


def _stack_key(inputs: Any) -> tuple[Any, ...]:
    if hasattr(inputs, "columns"):
        return ("table", tuple(inputs.columns), tuple(str(d) for d in inputs.dtypes))
    return ("array", inputs.shape[1], inputs.dtype.kind)


def _outputs_per_row(outputs: Any, rows: int) -> np.ndarray | None:
    """The outputs as an array with one entry (or row) per input row, else None (none are kept)."""
    from ray_deploy.dataplane.capture import output_array

    array = None if outputs is None else output_array(outputs)
    return array if array is not None and len(array) == rows else None


def _block(run: list[tuple[Sample, Any, Any]]) -> SampleBlock:
    import pandas as pd

    from ray_deploy.dataplane.capture import input_frame

    samples, inputs, outputs = zip(*run, strict=True)
    if hasattr(inputs[0], "columns"):
        table = inputs[0] if len(inputs) == 1 else pd.concat(inputs, ignore_index=True)
    else:
        table = input_frame(inputs[0] if len(inputs) == 1 else np.concatenate(inputs))
    stacked = None if outputs[0] is None else outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
    counts = np.asarray([len(i) for i in inputs], dtype=np.int64)
    return SampleBlock(list(samples), table, stacked, counts)

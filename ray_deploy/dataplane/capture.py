"""Request capture: what every answered request leaves behind, handed to the Monitor without waiting.

The ingress calls :meth:`Capture.record` once per request; samples queue in the replica and a background
task ships them to the Monitor every half second, so no request waits for the Monitor. The buffer is
bounded: when the Monitor cannot keep up, samples are dropped and counted, never piled up.

Every request leaves its traffic record (time, latency, status, rows). A request chosen by the
:class:`CaptureSampler` (``CaptureSpec.sample_rate``, capped at ``max_per_s`` per replica) also carries its
validated inputs and its outputs; excluded columns are dropped and hashed columns hashed here, in the
replica, so they never travel. With capture off nothing but the traffic record is kept.

Example:
    >>> capture = Capture("iris", monitor_handle)
    >>> capture.configure(CaptureSpec(sample_rate=0.5), salt="k3y")
    >>> capture.record(Sample(t=time.time(), latency_ms=3.1, status=200, rows=2), inputs=frame, outputs=preds)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import operator
import random
from typing import Any

from ray_deploy.config import CaptureSpec
from ray_deploy.status import Sample

log = logging.getLogger("ray.serve")

FLUSH_S = 0.5
MAX_PENDING = 10_000
# wider tensors (images, embeddings) are not captured as inputs: their outputs still are
MAX_CAPTURED_COLUMNS = 1_000


@dataclasses.dataclass
class CaptureSampler:
    """Decides which requests are captured: a share of them, at most ``max_per_s`` (a token bucket).

    Pure apart from its random draw; ``now`` is passed in, so tests drive it with a fake clock.

    Example:
        >>> sampler = CaptureSampler(sample_rate=1.0, max_per_s=2)
        >>> [sampler.admit(now=10.0) for _ in range(3)]
        [True, True, False]
    """

    sample_rate: float = 1.0
    max_per_s: float = 500.0
    tokens: float = -1.0
    updated: float = 0.0
    rng: random.Random = dataclasses.field(default_factory=random.Random)

    def admit(self, now: float) -> bool:
        """Whether the request answered at ``now`` is captured."""
        if self.sample_rate <= 0:
            return False
        burst = max(1.0, self.max_per_s)
        if self.tokens < 0:
            self.tokens = burst
        else:
            self.tokens = min(burst, self.tokens + (now - self.updated) * self.max_per_s)
        self.updated = now
        if self.sample_rate < 1 and self.rng.random() >= self.sample_rate:
            return False
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def table_input(model_input: Any) -> Any:
    """The model input as a table: a DataFrame as it is, a 1-D or 2-D array or tensor as a 2-D numpy array (a 1-D
    one as one column), or None when it is not a table (deeper tensors, or wider than :data:`MAX_CAPTURED_COLUMNS`).

    Example:
        >>> table_input(np.array([1.0, 2.0])).shape
        (2, 1)
    """
    import numpy as np
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        return model_input
    if hasattr(model_input, "detach"):  # a torch tensor
        model_input = model_input.detach().cpu().numpy()
    array = np.asarray(model_input) if isinstance(model_input, (list, np.ndarray)) else None
    if array is None or array.ndim == 0 or array.ndim > 2:
        return None
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    return None if array.shape[1] > MAX_CAPTURED_COLUMNS else array


def input_frame(model_input: Any) -> Any:
    """The model input as a DataFrame of named columns, or None when it is not a table (:func:`table_input`).

    A DataFrame stays as it is; an array or tensor becomes columns ``x0``, ``x1``, ... (as the reference data does,
    so the two compare).

    Example:
        >>> input_frame(np.array([[1.0, 2.0]])).columns.tolist()
        ['x0', 'x1']
    """
    import pandas as pd

    table = table_input(model_input)
    if table is None or isinstance(table, pd.DataFrame):
        return table
    return pd.DataFrame(table, columns=[f"x{i}" for i in range(table.shape[1])])


def output_array(output: Any) -> Any:
    """Model output as a numpy array (one entry or row per input row), or None when it is not array-like."""
    import numpy as np

    if hasattr(output, "detach"):
        output = output.detach().cpu().numpy()
    if hasattr(output, "to_numpy"):
        output = output.to_numpy()
    try:
        array = np.asarray(output)
    except Exception:  # outputs of odd shapes are not captured; the request is unaffected
        return None
    return array if array.ndim in (1, 2) else None


class Capture:
    """Queues samples of one replica and ships them to the Monitor in the background."""

    def __init__(self, name: str, monitor: Any, flush_s: float = FLUSH_S, max_pending: int = MAX_PENDING) -> None:
        self.name = name
        self.monitor = monitor
        self.flush_s = flush_s
        self.max_pending = max_pending
        self.dropped = 0
        self.spec = CaptureSpec()
        self.salt = ""
        self.sampler = CaptureSampler(self.spec.sample_rate, self.spec.max_per_s)
        self._pending: list[tuple[Sample, Any, Any]] = []
        self._flusher: asyncio.Task[None] | None = None

    def configure(self, spec: CaptureSpec, salt: str) -> None:
        """Apply the deployment's capture settings (from its ``user_config``)."""
        self.spec, self.salt = spec, salt
        self.sampler = CaptureSampler(spec.sample_rate, spec.max_per_s)

    def record(self, sample: Sample, inputs: Any = None, outputs: Any = None) -> None:
        """Queue one sample, with the request's inputs and outputs when it is captured; never raises."""
        if self.monitor is None:
            return
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        payload: tuple[Any, Any] = (None, None)
        if inputs is not None and self.spec.enabled and self.sampler.admit(sample.t):
            try:
                payload = self._payload(inputs, outputs)
            except Exception:  # capture must never fail a prediction
                log.warning("%s: could not capture a request", self.name, exc_info=True)
        self._pending.append((sample, *payload))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    def _payload(self, inputs: Any, outputs: Any) -> tuple[Any, Any]:
        """Inputs and outputs as cheaply as possible: arrays travel as they are (the Monitor makes the table); a
        DataFrame loses its excluded columns and has its hashed ones hashed first."""
        if hasattr(inputs, "detach"):  # a torch tensor: a numpy view, no copy
            inputs = inputs.detach().cpu().numpy()
        if hasattr(inputs, "columns") and (self.spec.exclude or self.spec.hash):
            from ray_deploy.capture_store import drop_columns, pseudonymize

            inputs = pseudonymize(drop_columns(inputs, self.spec.exclude), self.spec.hash, self.salt)
        return inputs, output_array(outputs)

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_s)
        pending, self._pending = self._pending, []
        dropped, self.dropped = self.dropped, 0
        try:
            self.monitor.record.remote(PackedSamples.pack(pending), dropped)
        except Exception:  # a monitor hiccup must never fail a prediction
            log.warning("%s: could not ship %d samples to the monitor", self.name, len(pending), exc_info=True)


_TRAFFIC_FIELDS = tuple(f.name for f in dataclasses.fields(Sample) if f.name not in ("inputs", "outputs"))
_traffic_of = operator.attrgetter(*_TRAFFIC_FIELDS)
Run = tuple[Any, Any]
"""Consecutive values of one column: ``(list of row counts, their arrays stacked)`` for arrays of one dtype and row
shape, ``(n, value)`` for ``n`` times the same value (None) or one value that does not stack (a DataFrame)."""


@dataclasses.dataclass
class PackedSamples:
    """Samples as columns: how a replica ships them to its Monitor.

    Ray pickles a call's arguments on the caller's event loop. A thousand ``Sample`` objects, each with its own small
    input and output arrays, took ~14 ms to pickle there (a stall every flush, at every request rate); as one list of
    traffic tuples and a few stacked arrays they take well under a millisecond. The Monitor unpacks them.

    Example:
        >>> entries = [(sample, np.ones((1, 4)), np.zeros(1)), (sample, np.ones((2, 4)), np.zeros(2))]
        >>> packed = PackedSamples.pack(entries)
        >>> [len(s.inputs) for s in packed.unpack()]
        [1, 2]
    """

    traffic: list[tuple[Any, ...]]
    """Each sample's fields other than inputs and outputs, in ``dataclasses.fields(Sample)`` order."""
    inputs: list[Run]
    outputs: list[Run]

    @classmethod
    def pack(cls, entries: list[tuple[Sample, Any, Any]]) -> PackedSamples:
        """``(sample, inputs, outputs)`` entries (the sample's own inputs and outputs are not read) as columns."""
        return cls(
            [_traffic_of(sample) for sample, _, _ in entries],
            _runs([inputs for _, inputs, _ in entries]),
            _runs([outputs for _, _, outputs in entries]),
        )

    def unpack(self) -> list[Sample]:
        """The samples, their inputs and outputs as views of the stacked arrays."""
        columns = zip(self.traffic, _values(self.inputs), _values(self.outputs), strict=True)
        return [
            Sample(**dict(zip(_TRAFFIC_FIELDS, traffic, strict=True)), inputs=inputs, outputs=outputs)
            for traffic, inputs, outputs in columns
        ]


def _runs(values: list[Any]) -> list[Run]:
    runs: list[Run] = []
    key: Any = None
    group: list[Any] = []
    for value in values:
        value_key = _run_key(value)
        if group and value_key is not None and value_key == key:
            group.append(value)
            continue
        if group:
            runs.append(_run(key, group))
        key, group = value_key, [value]
    if group:
        runs.append(_run(key, group))
    return runs


def _run_key(value: Any) -> Any:
    """What values must share to form one run; None for a value that travels alone."""
    import numpy as np

    if value is None:
        return "none"
    if isinstance(value, np.ndarray) and value.ndim >= 1:
        return (value.dtype, value.shape[1:])
    return None


def _run(key: Any, group: list[Any]) -> Run:
    import numpy as np

    if isinstance(key, tuple):
        return [len(value) for value in group], np.concatenate(group)
    return len(group), group[0]


def _values(runs: list[Run]) -> list[Any]:
    import numpy as np

    values: list[Any] = []
    for counts, value in runs:
        if isinstance(counts, int):
            values.extend([value] * counts)
        else:
            bounds = np.cumsum([0, *counts]).tolist()
            values.extend(value[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    return values

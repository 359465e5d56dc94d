"""Running validated inputs through the model: dynamic batching, the time limit, and model failures.

A lone request runs at once; while others are in flight, requests join a Serve batch. A model that
raises ``ValueError`` rejected its input (422, with the model's message); any other exception is a
failure inside the model (500, safe message, traceback in the replica log).

Example:
    >>> predictor = Predictor("iris")
    >>> predictor.configure(DeployOptions(), is_torch=False)
    >>> await predictor.run(loaded, frame, is_current=True)
    array([0, 0])
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import pandas as pd

from ray_deploy.config import DeployOptions
from ray_deploy.dataplane.served_model import Loaded
from ray_deploy.errors import ModelFailed, RayDeployError, RequestTimeout, SchemaMismatch

log = logging.getLogger("ray.serve")


class Predictor:
    """Batches and times model calls of one replica."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.options = DeployOptions()
        self._batched: Any = None
        self._batch_model: Loaded | None = None
        self._in_flight = 0

    def configure(self, options: DeployOptions, is_torch: bool) -> None:
        """Apply (new) options; batching is on when the effective batch size is above 1."""
        from ray import serve

        self.options = options
        size = options.batch_size(is_torch)
        self._batched = (
            serve.batch(max_batch_size=size, batch_wait_timeout_s=options.batch_wait_timeout_s)(self._run_batch)
            if size > 1
            else None
        )

    async def run(
        self, loaded: Loaded, data: Any, request_id: str, is_current: bool = True, params: dict[str, Any] | None = None
    ) -> Any:
        """Predict ``data`` (already validated) within ``request_timeout_s``; requests with params run alone."""
        if self._batched is not None and is_current and self._in_flight > 0 and not params:
            self._batch_model = loaded
            call = self._batched(data)
        else:
            call = asyncio.to_thread(loaded.model.predict, data, params)
        self._in_flight += 1
        try:
            return await asyncio.wait_for(call, timeout=self.options.request_timeout_s)
        except asyncio.TimeoutError:
            raise RequestTimeout(
                f"model {self.name!r} took longer than request_timeout_s={self.options.request_timeout_s:g}; "
                "send fewer rows or redeploy with a larger request_timeout_s"
            ) from None
        except RayDeployError:
            raise
        except ValueError as exc:
            raise SchemaMismatch(
                f"model {self.name!r} rejected the input: {_first_line(exc)}; check the values "
                "(e.g. an unseen category) against what the model was trained on",
                request_id=request_id,
            ) from None
        except Exception as exc:
            log.exception("%s: the model raised while predicting (request %s)", self.name, request_id)
            raise ModelFailed(
                f"model {self.name!r} raised {type(exc).__name__} while predicting; the full traceback is in "
                f"the replica log (request_id {request_id}). Check the input, or fix the model and redeploy.",
                request_id=request_id,
            ) from None
        finally:
            self._in_flight -= 1

    async def _run_batch(self, inputs: list[Any]) -> list[Any]:
        loaded = self._batch_model
        assert loaded is not None  # internal: set by run() before any batched call
        sizes = [len(x) for x in inputs]
        joined = pd.concat(inputs, ignore_index=True) if isinstance(inputs[0], pd.DataFrame) else np.concatenate(inputs)
        output = await asyncio.to_thread(loaded.model.predict, joined)
        bounds = np.cumsum([0, *sizes])
        return [output[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__

"""A model's outputs: described for V2 metadata, and encoded for the JSON and V2 answers.

Example:
    >>> to_jsonable(np.array([1, 0]))
    [1, 0]
    >>> list(output_tensors(pd.DataFrame({"label": [1], "score": [0.9]})))
    ['label', 'score']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ray_deploy.dataplane.columns import column_of
from ray_deploy.dataplane.v2 import v2_datatype


def describe_outputs(outputs_schema: Any) -> list[dict[str, Any]]:
    """V2 model-metadata ``outputs`` of an MLflow output schema: name, V2 datatype and shape.

    Column outputs have shape ``[-1]``; tensor outputs their tensor shape (k class probabilities: ``[-1, k]``).

    Example:
        >>> describe_outputs(infer_signature(X, np.zeros((1, 3))).outputs)
        [{'name': 'predictions', 'datatype': 'FP64', 'shape': [-1, 3]}]
    """
    if outputs_schema is None:
        return []
    specs = outputs_schema.inputs
    if outputs_schema.is_tensor_spec():
        return [
            {
                "name": _output_name(spec, i),
                "datatype": v2_datatype(np.dtype(str(spec.type))),
                "shape": list(spec.shape),
            }
            for i, spec in enumerate(specs)
        ]
    return [
        {"name": _output_name(spec, i), "datatype": column_of(spec).v2_datatype, "shape": [-1]}
        for i, spec in enumerate(specs)
    ]


def to_jsonable(output: Any) -> list[Any]:
    """Model output as a JSON list with one entry per input row.

    Example:
        >>> to_jsonable(np.array([1, 0]))
        [1, 0]
    """
    if isinstance(output, pd.DataFrame):
        return output.to_dict(orient="records")
    if isinstance(output, (pd.Series, np.ndarray)):
        return output.tolist()
    if hasattr(output, "detach"):
        return output.detach().cpu().numpy().tolist()
    return list(output)


def output_tensors(output: Any) -> dict[str, np.ndarray]:
    """Model output as named arrays for V2: one per DataFrame column, else one called ``predictions``.

    Example:
        >>> list(output_tensors(np.array([0, 1])))
        ['predictions']
    """
    if isinstance(output, pd.DataFrame):
        return {str(c): output[c].to_numpy() for c in output.columns}
    if hasattr(output, "detach"):
        output = output.detach().cpu().numpy()
    return {"predictions": np.asarray(output)}


def _output_name(spec: Any, i: int) -> str:
    name = getattr(spec, "name", None)
    return str(name) if name else ("predictions" if i == 0 else f"predictions-{i}")

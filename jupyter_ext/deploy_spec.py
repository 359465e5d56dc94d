"""Parse the YAML body of a ``%%deploy`` cell: which variables hold the model and sample, and validated options.

The options are the same pydantic :class:`ray_deploy.DeployOptions` the Python API takes; every error names
the offending key and its line in the cell.

Example:
    >>> spec = parse_spec("model: clf\\nsample_input: X[:5]\\nmax_replicas: 2\\n")
    >>> spec.model, spec.sample_input, spec.options
    ('clf', 'X[:5]', {'max_replicas': 2})
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ray_deploy.config import CaptureSpec, DeployOptions, DriftSpec
from ray_deploy.errors import ConfigError
from ray_deploy.package import PREDICT_METHODS

VARIABLE_KEYS = ("model", "sample_input", "reference")
PREDICT_METHOD = "predict_method"  # how the model is registered, not a serving option
MONITORING = {"capture": CaptureSpec, "drift": DriftSpec}  # nested mappings, e.g. `drift: {window_rows: 1000}`
_NOT_OPTIONS = (*VARIABLE_KEYS, PREDICT_METHOD, *MONITORING)
_EXAMPLE = "e.g. the lines `model: clf`, `sample_input: X[:5]`, `max_replicas: 2`"


@dataclass(frozen=True)
class DeploySpec:
    """A parsed ``%%deploy`` cell: the model and sample variables (names or expressions) and the options given."""

    model: str
    sample_input: str | None = None
    reference: str | None = None
    predict_method: str = "predict"
    capture: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)


def parse_spec(text: str, first_line: int = 1) -> DeploySpec:
    """Parse and validate a YAML deployment spec; ``first_line`` is the cell line the YAML starts on.

    Raises :class:`ray_deploy.ConfigError` naming the key and line of the first problems found.

    Example:
        >>> parse_spec("model: clf\\nmax_replica: 2\\n", first_line=2)
        Traceback (most recent call last):
        ConfigError: invalid %%deploy spec: line 3: 'max_replica' is not a deployment option (did you mean ...
    """
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + first_line}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"the %%deploy cell is not valid YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"the %%deploy cell is empty; write one `key: value` per line, {_EXAMPLE}")
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"the %%deploy cell must be YAML `key: value` lines, not a {type(data).__name__}; {_EXAMPLE}")
    lines = _key_lines(root, first_line)
    problems = (
        _variable_problems(data, lines)
        + _predict_method_problems(data, lines)
        + _monitoring_problems(data, lines)
        + _option_problems(data, lines)
    )
    if problems:
        raise ConfigError("invalid %%deploy spec: " + "; ".join(problems))
    options = {k: v for k, v in data.items() if k not in _NOT_OPTIONS}
    return DeploySpec(
        model=str(data["model"]).strip(),
        sample_input=str(data["sample_input"]).strip() if data.get("sample_input") is not None else None,
        reference=str(data["reference"]).strip() if data.get("reference") is not None else None,
        predict_method=str(data.get(PREDICT_METHOD, "predict")),
        capture=data.get("capture"),
        drift=data.get("drift"),
        options=options,
        lines=lines,
    )


def _key_lines(root: Any, first_line: int) -> dict[str, int]:
    lines: dict[str, int] = {}
    for key_node, _ in root.value:
        key = str(key_node.value)
        line = key_node.start_mark.line + first_line
        if key in lines:
            raise ConfigError(f"invalid %%deploy spec: line {line}: '{key}' is given twice (also on line {lines[key]})")
        lines[key] = line
    return lines


def _variable_problems(data: dict[Any, Any], lines: dict[str, int]) -> list[str]:
    problems = []
    if "model" not in data:
        problems.append("missing 'model': name the variable that holds the model, e.g. `model: clf`")
    for key in VARIABLE_KEYS:
        value = data.get(key)
        if key in data and (not isinstance(value, str) or not value.strip()):
            problems.append(
                f"line {lines[key]}: '{key}' must name a notebook variable (or expression) such as `{key}: "
                f"{'clf' if key == 'model' else 'X[:5]'}`, got {value!r}"
            )
    return problems


def _predict_method_problems(data: dict[Any, Any], lines: dict[str, int]) -> list[str]:
    value = data.get(PREDICT_METHOD, "predict")
    if value in PREDICT_METHODS:
        return []
    where = lines.get(PREDICT_METHOD, "?")
    return [f"line {where}: '{PREDICT_METHOD}' must be one of {list(PREDICT_METHODS)}, got {value!r}"]


def _monitoring_problems(data: dict[Any, Any], lines: dict[str, int]) -> list[str]:
    problems = []
    for key, spec in MONITORING.items():
        if key not in data:
            continue
        value = data[key]
        if key == "capture" and isinstance(value, bool):
            continue
        if not isinstance(value, dict):
            problems.append(f"line {lines[key]}: '{key}' must be a mapping of {spec.__name__} fields, got {value!r}")
            continue
        try:
            spec(**value)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(part) for part in err["loc"])
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(
                f"line {lines[key]}: '{key}.{where}': {message}" if where else f"line {lines[key]}: {message}"
            )
    return problems


def _option_problems(data: dict[Any, Any], lines: dict[str, int]) -> list[str]:
    options = {str(k): v for k, v in data.items() if k not in _NOT_OPTIONS}
    try:
        DeployOptions(**options)
    except ValidationError as exc:
        return [_describe(err, options, lines) for err in exc.errors()]
    return []


def _describe(err: Any, options: dict[str, Any], lines: dict[str, int]) -> str:
    key = ".".join(str(part) for part in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        known = [*_NOT_OPTIONS, *DeployOptions.model_fields]
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"line {lines.get(key, '?')}: '{key}' is not a deployment option ({hint}known: {', '.join(known)})"
    if key:
        return f"line {lines.get(key, '?')}: '{key}': {message} (got {err.get('input')!r})"
    named = [k for k in options if k in message]  # a cross-field rule names the keys it compares
    where = ", ".join(str(lines[k]) for k in named if k in lines)
    return f"line{'s' if len(named) > 1 else ''} {where}: {message}" if where else message

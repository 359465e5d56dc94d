"""The SHAP explanation result: reading, serializing and plotting an :class:`Explanation`.

This module holds the result of :func:`ray_deploy.explain.explain_model` and nothing that computes it: the
:class:`Explanation` class (per-row frame, global importance, JSON wire form, offline matplotlib plots, notebook
HTML), :func:`concat` to join explanations of consecutive row chunks, and :func:`figure_png` to render a figure.
It is imported by replica code, so at module level it needs only numpy, pandas and ``ray_deploy.errors``;
matplotlib and shap are imported inside the functions that plot.

Example:
    >>> import numpy as np, pandas as pd
    >>> expl = Explanation(np.array([[1.0, -3.0]]), np.zeros(1), ["a", "b"], pd.DataFrame({"a": [1], "b": [2]}),
    ...                    np.full(1, -2.0), "linear", ["prediction"])
    >>> Explanation.from_json(expl.to_json()).importance().index.tolist()
    ['b', 'a']
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ray_deploy.errors import ConfigError

if TYPE_CHECKING:
    import matplotlib.figure

PLOT_KINDS = ("waterfall", "bar", "beeswarm", "dependence")


@dataclass(frozen=True)
class Explanation:
    """SHAP values of some rows, with what is needed to read them.

    ``values`` is ``(n_rows, n_features)`` for one output and ``(n_rows, n_features, n_outputs)`` for several
    (class probabilities); ``base_values`` and ``predictions`` are ``(n_rows,)`` or ``(n_rows, n_outputs)``.
    Wherever a method takes ``output``, ``None`` means the last output (the positive class of a binary classifier).

    Example:
        >>> expl = Explanation(np.ones((1, 2)), np.zeros(1), ["a", "b"], pd.DataFrame({"a": [1], "b": [2]}),
        ...                    np.full(1, 2.0), "linear", ["prediction"])
        >>> expl.to_frame().columns.tolist()
        ['a', 'b', 'base_value', 'prediction']
    """

    values: np.ndarray
    base_values: np.ndarray
    feature_names: list[str]
    data: pd.DataFrame
    predictions: np.ndarray
    explainer: str
    output_names: list[str]

    @property
    def n_outputs(self) -> int:
        """How many outputs are explained (1 for a regression, the number of classes for probabilities)."""
        return 1 if self.values.ndim == 2 else int(self.values.shape[2])

    def _output(self, output: int | None) -> int | None:
        """The index into the outputs axis, or None for a single-output explanation."""
        if self.values.ndim == 2:
            if output not in (None, 0, -1):
                raise ConfigError(f"output {output} does not exist: this explanation has one output")
            return None
        n = self.n_outputs
        if output is None:
            return n - 1
        if not -n <= output < n:
            raise ConfigError(f"output {output} does not exist: outputs are 0..{n - 1} ({self.output_names})")
        return output % n

    def _slice(self, output: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, base_values, predictions) of one output, 2-D / 1-D / 1-D."""
        k = self._output(output)
        if k is None:
            return self.values, self.base_values, self.predictions
        return self.values[:, :, k], self.base_values[:, k], self.predictions[:, k]

    def to_frame(self, output: int | None = None) -> pd.DataFrame:
        """One row per explained row: a column of SHAP values per feature, then ``base_value`` and ``prediction``.

        Example:
            >>> expl = Explanation(np.ones((1, 2)), np.zeros(1), ["a", "b"], pd.DataFrame({"a": [1], "b": [2]}),
            ...                    np.full(1, 2.0), "linear", ["prediction"])
            >>> expl.to_frame().loc[0, "prediction"]
            np.float64(2.0)
        """
        values, base, pred = self._slice(output)
        frame = pd.DataFrame(values, columns=self.feature_names, index=self.data.index)
        frame["base_value"] = base
        frame["prediction"] = pred
        return frame

    def importance(self, output: int | None = None) -> pd.Series:
        """Mean absolute SHAP value per feature, largest first: the global importance of each feature.

        Example:
            >>> expl = Explanation(np.array([[1.0, -3.0]]), np.zeros(1), ["a", "b"], pd.DataFrame({"a": [1], "b": [2]}),
            ...                    np.full(1, -2.0), "linear", ["prediction"])
            >>> expl.importance().index.tolist()
            ['b', 'a']
        """
        values, _, _ = self._slice(output)
        series = pd.Series(np.abs(values).mean(axis=0), index=self.feature_names, name="mean |SHAP|")
        return series.sort_values(ascending=False)

    def to_json(self) -> dict[str, Any]:
        """The wire form: plain lists and strings, so ``Explanation.from_json(json.loads(json.dumps(doc)))`` is exact.

        Example:
            >>> expl = Explanation(np.ones((1, 2)), np.zeros(1), ["a", "b"], pd.DataFrame({"a": [1], "b": [2]}),
            ...                    np.full(1, 2.0), "linear", ["prediction"])
            >>> sorted(expl.to_json())[:3]
            ['base_values', 'data', 'explainer']
        """
        split = self.data.to_dict(orient="split")
        return {
            "values": self.values.tolist(),
            "base_values": self.base_values.tolist(),
            "feature_names": list(self.feature_names),
            "data": {
                "columns": [str(c) for c in split["columns"]],
                "index": _plain(split["index"]),
                "data": _plain(split["data"]),
                "dtypes": [str(t) for t in self.data.dtypes],
            },
            "predictions": self.predictions.tolist(),
            "explainer": self.explainer,
            "output_names": list(self.output_names),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Explanation:
        """Rebuild an explanation from :meth:`to_json`'s document.

        Example:
            >>> expl = Explanation(np.ones((1, 2)), np.zeros(1), ["a", "b"], pd.DataFrame({"a": [1], "b": [2]}),
            ...                    np.full(1, 2.0), "linear", ["prediction"])
            >>> Explanation.from_json(expl.to_json()).feature_names
            ['a', 'b']
        """
        try:
            d = doc["data"]
            frame = pd.DataFrame(d["data"], index=d["index"], columns=d["columns"])
            frame = frame.astype(dict(zip(d["columns"], d["dtypes"], strict=True)))
            return cls(
                values=np.asarray(doc["values"], dtype=float),
                base_values=np.asarray(doc["base_values"], dtype=float),
                feature_names=list(doc["feature_names"]),
                data=frame,
                predictions=np.asarray(doc["predictions"], dtype=float),
                explainer=str(doc["explainer"]),
                output_names=list(doc["output_names"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"not an explanation document ({type(e).__name__}: {e}); expected Explanation.to_json()"
            ) from e

    def plot(
        self, kind: str = "waterfall", row: int = 0, feature: str | None = None, output: int | None = None
    ) -> matplotlib.figure.Figure:
        """A matplotlib figure (rendered offline, not shown): waterfall of ``row``, bar, beeswarm or dependence.

        ``bar`` is the global mean |SHAP| per feature; ``dependence`` plots one ``feature``'s SHAP values against
        its values. The figure is detached from pyplot, so it is not shown twice in a notebook and does not leak.

        Example:
            >>> expl = Explanation(np.ones((1, 2)), np.zeros(1), ["a", "b"], pd.DataFrame({"a": [1], "b": [2]}),
            ...                    np.full(1, 2.0), "linear", ["prediction"])
            >>> type(expl.plot("bar")).__name__
            'Figure'
        """
        if kind not in PLOT_KINDS:
            raise ConfigError(f"unknown plot kind {kind!r}; kinds: {list(PLOT_KINDS)}")
        if kind == "waterfall" and not -len(self.data) <= row < len(self.data):
            raise ConfigError(f"row {row} does not exist: this explanation has {len(self.data)} rows")
        if kind == "dependence" and feature not in self.feature_names:
            raise ConfigError(f"the dependence plot needs feature= one of {self.feature_names}; got {feature!r}")
        import matplotlib.pyplot as plt

        values, base, _ = self._slice(output)
        title = self.output_names[self._output(output) or 0]
        fig = plt.figure()
        try:
            if kind == "dependence":
                assert feature is not None  # checked above
                _dependence(fig, self.data[feature], values[:, self.feature_names.index(feature)], feature)
            else:
                ex = self._shap_explanation(values, base)
                if kind == "waterfall":
                    _shap_plot("waterfall", ex[row], max_display=12)
                elif kind == "bar":
                    _shap_plot("bar", ex, max_display=12)
                else:
                    _shap_plot("beeswarm", ex, max_display=12)
            fig = plt.gcf()
            fig.suptitle(f"{kind}: {title}", fontsize=10)
        finally:
            plt.close(fig)
        return fig

    def _shap_explanation(self, values: np.ndarray, base: np.ndarray) -> Any:
        import shap

        return shap.Explanation(
            values=values,
            base_values=base,
            data=_numeric_view(self.data).to_numpy(dtype=float),
            display_data=self.data.to_numpy(),
            feature_names=list(self.feature_names),
        )

    def _repr_html_(self) -> str:
        """A compact table of the first rows' SHAP values and an inline PNG of the global importance."""
        head = self.to_frame().head(10)
        png = figure_png(self.plot("bar"))
        return (
            f"<div><b>SHAP explanation</b> &middot; {self.explainer} explainer &middot; {len(self.data)} rows "
            f"&middot; output {self.output_names[self._output(None) or 0]}"
            f"{head.to_html(float_format=lambda v: f'{v:.4g}', border=0)}"
            f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}"/></div>'
        )


def figure_png(fig: matplotlib.figure.Figure, dpi: int = 80) -> bytes:
    """Render a matplotlib figure to PNG bytes (offline, any backend).

    Example:
        >>> import matplotlib.figure
        >>> figure_png(matplotlib.figure.Figure())[:4]
        b'\\x89PNG'
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _shap_plot(name: str, ex: Any, **kwargs: Any) -> None:
    import shap

    getattr(shap.plots, name)(ex, show=False, **kwargs)


def _dependence(fig: Any, x: pd.Series, shap_values: np.ndarray, feature: str) -> None:
    """SHAP value of one feature against its value; categories on a categorical axis."""
    ax = fig.add_subplot(1, 1, 1)
    if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
        ax.scatter(x.to_numpy(dtype=float), shap_values, s=12, alpha=0.8)
    else:
        labels = x.astype(str)
        cats = sorted(labels.unique())
        positions = labels.map({c: i for i, c in enumerate(cats)}).to_numpy(dtype=float)
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(positions))
        ax.scatter(positions + jitter, shap_values, s=12, alpha=0.8)
        ax.set_xticks(range(len(cats)), cats)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlabel(feature)
    ax.set_ylabel(f"SHAP value for {feature}")


def _numeric_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with non-numeric columns as category codes (for shap's colouring)."""
    out = frame.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]) or pd.api.types.is_bool_dtype(out[col]):
            out[col] = pd.Categorical(out[col].astype(str)).codes
    return out


def _plain(value: Any) -> Any:
    """numpy scalars inside nested lists as plain Python values (for JSON)."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def concat(parts: list[Explanation]) -> Explanation:
    """Join explanations of consecutive row chunks (same model, explainer and outputs) into one, in order.

    Example:
        >>> e = Explanation(np.ones((1, 2)), np.zeros(1), ["a", "b"], pd.DataFrame({"a": [1], "b": [2]}),
        ...                 np.full(1, 2.0), "linear", ["prediction"])
        >>> concat([e, e]).values.shape
        (2, 2)
    """
    if not parts:
        raise ConfigError("concat needs at least one explanation")
    first = parts[0]
    for p in parts[1:]:
        if (p.feature_names, p.explainer, p.output_names) != (first.feature_names, first.explainer, first.output_names):
            raise ConfigError(
                "can only concat explanations of the same features, explainer and outputs; got "
                f"{first.feature_names}/{first.explainer}/{first.output_names} and "
                f"{p.feature_names}/{p.explainer}/{p.output_names}"
            )
    return Explanation(
        values=np.concatenate([p.values for p in parts]),
        base_values=np.concatenate([p.base_values for p in parts]),
        feature_names=list(first.feature_names),
        data=pd.concat([p.data for p in parts]),
        predictions=np.concatenate([p.predictions for p in parts]),
        explainer=first.explainer,
        output_names=list(first.output_names),
    )

"""The inline SHAP explanation panel: pickers and matplotlib PNG plots of one :class:`Explanation`, offline.

:func:`explain_panel` is the live ipywidgets view (a row picker redrawing that row's waterfall, an output picker
for multi-output explanations, tabs with global importance, beeswarm and a dependence plot with a feature
picker); :func:`explain_html` is the static fallback for frontends without widgets (and for exported notebooks).
Everything drawn comes from :meth:`Explanation.plot`; this module only lays it out.

Example:
    >>> panel = explain_panel(expl)        # doctest: +SKIP
    >>> panel.row.value = 3                # redraws the waterfall of row 3   # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
from typing import Any

import ipywidgets as widgets

from ray_deploy.errors import ConfigError
from ray_deploy.explanation import Explanation, figure_png

__all__ = ["ExplainPanel", "explain_html", "explain_panel"]

_IMAGE_WIDTH = "520px"
_TABS = ("Row", "Importance", "Beeswarm", "Dependence")


def _png(expl: Explanation, kind: str, **kwargs: Any) -> bytes:
    """One plot of ``expl`` as PNG bytes (the figure is rendered and dropped)."""
    return figure_png(expl.plot(kind, **kwargs))


class ExplainPanel(widgets.VBox):
    """The panel's widget: ``output``, ``row`` and ``feature`` pickers and the ``waterfall``, ``bar``,
    ``beeswarm`` and ``dependence`` images they redraw.

    Example:
        >>> panel = ExplainPanel(expl)     # doctest: +SKIP
        >>> panel.feature.value = "plan"   # redraws the dependence plot   # doctest: +SKIP
    """

    def __init__(self, expl: Explanation, row: int = 0) -> None:
        self.expl = expl
        n_rows = len(expl.data)
        if not 0 <= row < max(n_rows, 1):
            raise ConfigError(f"row {row} does not exist: the explanation has {n_rows} rows (0..{n_rows - 1})")
        self.output = widgets.Dropdown(
            options=[(name, i) for i, name in enumerate(expl.output_names)],
            value=expl.n_outputs - 1,
            description="output",
            layout=widgets.Layout(display="flex" if expl.n_outputs > 1 else "none"),
        )
        self.row = widgets.IntSlider(
            value=row, min=0, max=max(n_rows - 1, 0), description="row", continuous_update=False
        )
        self.feature = widgets.Dropdown(
            options=list(expl.feature_names), value=expl.importance().index[0], description="feature"
        )
        self.waterfall, self.bar, self.beeswarm, self.dependence = (
            widgets.Image(format="png", layout=widgets.Layout(width=_IMAGE_WIDTH)) for _ in range(4)
        )
        self.tabs = widgets.Tab(
            children=[
                widgets.VBox([self.row, self.waterfall]),
                self.bar,
                self.beeswarm,
                widgets.VBox([self.feature, self.dependence]),
            ]
        )
        for i, title in enumerate(_TABS):
            self.tabs.set_title(i, title)
        header = widgets.HTML(
            f"<b>SHAP explanation</b> &middot; {html.escape(expl.explainer)} explainer &middot; {n_rows} rows, "
            f"{len(expl.feature_names)} features"
        )
        super().__init__([header, self.output, self.tabs])
        self.output.observe(lambda _: self.redraw(), names="value")
        self.row.observe(lambda _: self._draw_waterfall(), names="value")
        self.feature.observe(lambda _: self._draw_dependence(), names="value")
        self.redraw()

    def redraw(self) -> None:
        """Draw every plot for the current output."""
        out = self.output.value
        self.bar.value = _png(self.expl, "bar", output=out)
        self.beeswarm.value = _png(self.expl, "beeswarm", output=out)
        self._draw_waterfall()
        self._draw_dependence()

    def _draw_waterfall(self) -> None:
        self.waterfall.value = _png(self.expl, "waterfall", row=self.row.value, output=self.output.value)

    def _draw_dependence(self) -> None:
        self.dependence.value = _png(self.expl, "dependence", feature=self.feature.value, output=self.output.value)


def explain_panel(expl: Explanation, row: int = 0) -> ExplainPanel:
    """The live panel of an explanation (display it, or let it be a cell's last expression); ``row`` is the row
    whose waterfall it shows first.

    Example:
        >>> from ray_deploy.explain import explain_model
        >>> panel = explain_panel(explain_model(model, "sklearn", frame))   # doctest: +SKIP
        >>> panel.row.value = 2                                             # doctest: +SKIP
    """
    return ExplainPanel(expl, row=row)


def explain_html(expl: Explanation, row: int = 0, output: int | None = None) -> str:
    """Static HTML with inline PNGs (waterfall of ``row``, importance, beeswarm) and the first rows' values.

    Example:
        >>> from IPython.display import HTML
        >>> HTML(explain_html(expl))   # doctest: +SKIP
    """
    out = expl.n_outputs - 1 if output is None else output
    images = "".join(
        f"<figure style='display:inline-block;margin:4px'><img alt='{kind}' "
        f"src='data:image/png;base64,{base64.b64encode(_png(expl, kind, **kw)).decode('ascii')}'/>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for kind, kw, caption in (
            ("waterfall", {"row": row, "output": out}, f"row {row}"),
            ("bar", {"output": out}, "global importance (mean |SHAP|)"),
            ("beeswarm", {"output": out}, "all rows"),
        )
    )
    table = expl.to_frame(output=out).head(10).to_html(float_format=lambda v: f"{v:.4g}", border=0)
    return (
        f"<div class='ray-deploy-explain'><b>SHAP explanation</b> &middot; {html.escape(expl.explainer)} explainer "
        f"&middot; output {html.escape(expl.output_names[out])} &middot; {len(expl.data)} rows"
        f"<div>{images}</div>{table}</div>"
    )

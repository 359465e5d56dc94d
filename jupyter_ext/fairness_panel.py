"""Show a :class:`~ray_deploy.fairness.FairnessReport` in a notebook: an ipywidgets panel and a static HTML fallback.

The panel draws only what the report holds (it computes no metrics): the headline metrics with the 80% rule
verdict, the per-group table, and a bar chart with 95% interval error bars (an offline PNG) whose metric a
dropdown picks. :func:`fairness_html` is the same content as plain HTML, for exports and frontends without widgets.

Example:
    >>> panel = fairness_panel(report)          # in a notebook: headline, table, chart with a metric dropdown
    >>> panel.metric.value = "tpr"              # redraws the chart
    >>> html = fairness_html(report)            # static fallback
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from ray_deploy.fairness import GROUP_METRICS, FairnessReport

__all__ = ["FairnessPanel", "fairness_html", "fairness_panel"]

_LABELS = {
    "selection_rate": "selection rate",
    "accuracy": "accuracy",
    "tpr": "true positive rate",
    "fpr": "false positive rate",
}


class FairnessPanel(widgets.VBox):
    """The panel widget: ``headline``, ``table`` (HTML), ``metric`` (Dropdown) and ``chart`` (PNG Image).

    Example:
        >>> panel = FairnessPanel(report)
        >>> panel.metric.options[0]
        ('selection rate', 'selection_rate')
    """

    def __init__(self, report: FairnessReport, metric: str = "selection_rate", **kwargs: Any) -> None:
        self.report = report
        self.headline = widgets.HTML(report.headline_html())
        self.table = widgets.HTML(report.table_html())
        self.metric = widgets.Dropdown(
            options=[(_LABELS[m], m) for m in GROUP_METRICS], value=metric, description="metric"
        )
        self.chart = widgets.Image(value=report.plot_png(metric), format="png")
        self.metric.observe(self._redraw, names="value")
        super().__init__([self.headline, self.table, self.metric, self.chart], **kwargs)

    def _redraw(self, change: dict[str, Any]) -> None:
        self.chart.value = self.report.plot_png(change["new"])

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = super()._repr_mimebundle_(**kwargs) or {}
        data["text/html"] = fairness_html(self.report)
        return data


def fairness_panel(report: FairnessReport) -> FairnessPanel:
    """An ipywidgets panel of ``report``: headline metrics and 80% rule verdict, per-group table, chart + dropdown.

    Example:
        >>> fairness_panel(fairness_metrics(y, model.predict(X), X["sex"]))
    """
    return FairnessPanel(report)


def fairness_html(report: FairnessReport) -> str:
    """The report as static HTML (headline, table and an inline selection-rate PNG), for exports.

    Example:
        >>> "80% rule" in fairness_html(report)
        True
    """
    return report._repr_html_()

"""The fairness panel: widget state, the dropdown redraws the chart, and the static HTML fallback."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import pandas as pd
import pytest

from jupyter_ext.fairness_panel import FairnessPanel, fairness_html, fairness_panel
from ray_deploy.fairness import FairnessReport, fairness_metrics


@pytest.fixture(scope="module")
def report() -> FairnessReport:
    y_true = np.array([1, 0] * 50)
    y_pred = np.array([1] * 30 + [0] * 20 + [1] * 15 + [0] * 35)
    return fairness_metrics(y_true, y_pred, pd.Series(["A"] * 50 + ["B"] * 50, name="sex"))


def test_panel_shows_headline_table_dropdown_and_chart(report: FairnessReport) -> None:
    panel = fairness_panel(report)
    assert isinstance(panel, FairnessPanel) and isinstance(panel, widgets.Widget)
    assert list(panel.children) == [panel.headline, panel.table, panel.metric, panel.chart]
    assert "<table" in panel.table.value and "<td>A</td>" in panel.table.value and "<td>B</td>" in panel.table.value
    assert "fails the 80% rule" in panel.headline.value and "demographic parity difference" in panel.headline.value
    assert [value for _, value in panel.metric.options] == ["selection_rate", "accuracy", "tpr", "fpr"]
    assert panel.metric.value == "selection_rate"
    assert panel.chart.format == "png" and bytes(panel.chart.value).startswith(b"\x89PNG")
    panel.close()


def test_dropdown_redraws_the_chart(report: FairnessReport) -> None:
    panel = fairness_panel(report)
    first = bytes(panel.chart.value)
    panel.metric.value = "tpr"
    tpr = bytes(panel.chart.value)
    assert tpr != first and tpr == report.plot_png("tpr")
    panel.metric.value = "selection_rate"
    assert bytes(panel.chart.value) == first
    panel.close()


def test_static_fallback_and_mimebundle(report: FairnessReport) -> None:
    html = fairness_html(report)
    assert "<table" in html and "data:image/png;base64," in html and "80% rule" in html
    panel = fairness_panel(report)
    bundle = panel._repr_mimebundle_()
    assert bundle["text/html"] == html
    panel.close()

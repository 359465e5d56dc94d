"""Show a :class:`~ray_deploy.drift_report.DriftReport` in a notebook: an ipywidgets panel and a static HTML fallback.

The panel lays out only what the report holds (it computes no statistics of its own): a verdict line (the drift
state as a badge, the drifted features, the domain-classifier AUC, the rows of the last window), the per-feature
table with each test's status and effect size (drifted rows highlighted), reference-vs-live histograms with a
feature picker, and the drift trend across windows. Plots are offline matplotlib PNGs from
:meth:`DriftReport.plot` and :meth:`DriftReport.plot_trend`. :func:`drift_html` is the same content as plain HTML,
for exported notebooks and frontends without widgets; it is also the panel's ``text/html`` mime data.

:func:`drift_badge_html` is the state badge, shared with the deployment card.

Example:
    >>> panel = drift_panel(dep.drift_report())   # doctest: +SKIP
    >>> panel.feature.value = "petal_length"      # redraws the histograms   # doctest: +SKIP
    >>> html = drift_html(dep.drift_report())     # static fallback   # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import logging
import math
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ray_deploy.errors import ConfigError, RayDeployError
from ray_deploy.explanation import figure_png

if TYPE_CHECKING:
    import matplotlib.figure

    from ray_deploy.drift_report import DriftReport

__all__ = ["DRIFT_STATE_COLORS", "DriftPanel", "drift_badge_html", "drift_html", "drift_panel", "drift_table_html"]

log = logging.getLogger(__name__)

DRIFT_STATE_COLORS = {
    "ok": "#1a7f37",
    "warning": "#9a6700",
    "alarm": "#cf222e",
    "collecting": "#57606a",
    "no_reference": "#57606a",
}
_DRIFTED_ROW = "background:#ffebe9;font-weight:bold"
_IMAGE_WIDTH = "560px"
_MAX_STATIC_HISTOGRAMS = 4
_TABS = ("Features", "Histograms", "Trend")
_EFFECT = {"numeric": "KS D", "categorical": "JS distance"}


def drift_badge_html(state: str, drifted_features: Iterable[str] = (), message: str = "") -> str:
    """The drift state as a coloured badge; its tooltip lists the drifted features and the message.

    Example:
        >>> "warning" in drift_badge_html("warning", ["petal_length"])
        True
    """
    features = list(drifted_features)
    title = (
        "; ".join(part for part in (f"drifted: {', '.join(features)}" if features else "", message) if part)
        or f"drift {state}"
    )
    color = DRIFT_STATE_COLORS.get(state, "#57606a")
    return (
        f"<span class='ray-deploy-drift-badge' data-state='{html.escape(state, quote=True)}' "
        f"title='{html.escape(title, quote=True)}' style='color:#fff;background:{color};border-radius:8px;"
        f"padding:0 6px;font-weight:bold;white-space:nowrap'>drift {html.escape(state.replace('_', ' '))}</span>"
    )


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.{digits}g}"


def _window_rows(report: DriftReport) -> int | None:
    """Rows in the last closed window (the trend's last point), or None before one closed."""
    trend = report.trend
    if trend is None or len(trend) == 0 or "rows" not in trend:
        return None
    return int(trend["rows"].iloc[-1])


def verdict_html(report: DriftReport) -> str:
    """The verdict line: state badge, drifted features, AUC, window rows, and the report's one-line message.

    Example:
        >>> "drift warning" in verdict_html(report)   # doctest: +SKIP
        True
    """
    drifted = list(report.drifted_features)
    message = str(report.message or "")
    parts = [drift_badge_html(str(report.state), drifted, message)]
    if drifted:
        parts.append(f"drifted: <b>{html.escape(', '.join(drifted))}</b>")
    elif str(report.state) in ("ok", "warning", "alarm"):
        parts.append("no feature drifted")
    if report.auc is not None:
        parts.append(f"domain classifier AUC {_number(report.auc, 2)}")
    rows = _window_rows(report)
    if rows is not None:
        parts.append(f"{rows} rows in the last window")
    line = " &middot; ".join(parts)
    return (
        f"<div class='ray-deploy-drift-verdict'><b>Drift</b> {line}"
        + (f"<div>{html.escape(message)}</div>" if message else "")
        + "</div>"
    )


def drift_table_html(report: DriftReport) -> str:
    """The per-feature tests as an HTML table, drifted features first and highlighted.

    Example:
        >>> "<table" in drift_table_html(report)   # doctest: +SKIP
        True
    """
    table = report.table
    if table is None or len(table) == 0:
        return "<div class='ray-deploy-drift-table'><i>no feature tests yet</i></div>"
    records = sorted(
        table.to_dict("records"), key=lambda r: (not bool(r.get("drifted")), -float(r.get("effect_size") or 0.0))
    )
    head = "".join(
        f"<th style='text-align:left;padding-right:1em'>{label}</th>"
        for label in ("feature", "status", "effect size", "test", "adjusted p", "PSI", "Wasserstein")
    )
    rows = []
    for r in records:
        drifted = bool(r.get("drifted"))
        effect = f"{_number(r.get('effect_size'))} ({_EFFECT.get(str(r.get('kind')), 'effect')})"
        cells = (
            html.escape(str(r.get("feature"))),
            "drifted" if drifted else "ok",
            effect,
            html.escape(str(r.get("test"))),
            _number(r.get("adjusted_p_value")),
            _number(r.get("psi")),
            _number(r.get("wasserstein")),
        )
        style = f" style='{_DRIFTED_ROW}'" if drifted else ""
        rows.append(
            f"<tr class='{'ray-deploy-drifted' if drifted else ''}'{style}>"
            + "".join(f"<td style='padding-right:1em'>{c}</td>" for c in cells)
            + "</tr>"
        )
    return f"<table class='ray-deploy-drift-table'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _png(figure: matplotlib.figure.Figure) -> bytes:
    """A figure as PNG bytes; released afterwards if pyplot manages it (so figures do not pile up in a kernel)."""
    try:
        return figure_png(figure)
    finally:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close(figure)


def _features(report: DriftReport) -> list[str]:
    table = report.table
    if table is None or len(table) == 0:
        return []
    return [str(f) for f in table["feature"]]


def _first_feature(report: DriftReport) -> str | None:
    features = _features(report)
    drifted = [f for f in report.drifted_features if f in features]
    return drifted[0] if drifted else (features[0] if features else None)


def _histogram_png(report: DriftReport, feature: str) -> tuple[bytes, str]:
    """The histograms of ``feature`` as PNG bytes, or empty bytes and why not (e.g. no histogram was recorded)."""
    try:
        return _png(report.plot(feature=feature)), ""
    except (RayDeployError, KeyError, ValueError) as exc:
        log.info("no histogram of %r to draw", feature, exc_info=True)
        return b"", f"no histograms of {feature!r}: {exc}"


def _trend_png(report: DriftReport) -> tuple[bytes, str]:
    if report.trend is None or len(report.trend) == 0:
        return b"", "no window has closed yet: the trend starts with the first one"
    try:
        return _png(report.plot_trend()), ""
    except (RayDeployError, ValueError) as exc:
        log.info("no drift trend to draw", exc_info=True)
        return b"", f"no trend: {exc}"


def _note_html(text: str) -> str:
    return f"<i>{html.escape(text)}</i>" if text else ""


class DriftPanel(widgets.VBox):
    """The panel widget: ``verdict`` and ``table`` (HTML), a ``feature`` picker with its ``histogram`` image, and
    the ``trend`` image, in tabs (Features, Histograms, Trend).

    Example:
        >>> panel = DriftPanel(report)            # doctest: +SKIP
        >>> panel.feature.value = "petal_width"   # redraws the histogram   # doctest: +SKIP
    """

    def __init__(self, report: DriftReport, feature: str | None = None, **kwargs: Any) -> None:
        self.report = report
        features = _features(report)
        if feature is not None and feature not in features:
            raise ConfigError(f"no drift test of feature {feature!r}; tested: {features}")
        self.verdict = widgets.HTML(verdict_html(report))
        self.table = widgets.HTML(drift_table_html(report))
        self.feature = widgets.Dropdown(
            options=features,
            value=feature if feature is not None else _first_feature(report),
            description="feature",
            layout=widgets.Layout(display="flex" if features else "none"),
        )
        self.histogram = widgets.Image(format="png", layout=widgets.Layout(width=_IMAGE_WIDTH))
        self.histogram_note = widgets.HTML()
        self.trend = widgets.Image(format="png", layout=widgets.Layout(width=_IMAGE_WIDTH))
        self.trend_note = widgets.HTML()
        self.tabs = widgets.Tab(
            children=[
                self.table,
                widgets.VBox([self.feature, self.histogram, self.histogram_note]),
                widgets.VBox([self.trend, self.trend_note]),
            ]
        )
        for i, title in enumerate(_TABS):
            self.tabs.set_title(i, title)
        super().__init__([self.verdict, self.tabs], **kwargs)
        self.add_class("ray-deploy-drift")
        self.feature.observe(lambda _: self._draw_histogram(), names="value")
        self._draw_histogram()
        self._draw_trend()

    def _draw_histogram(self) -> None:
        feature = self.feature.value
        if feature is None:
            png, note = b"", "no feature tests yet: " + (str(self.report.message or "") or "no window has closed")
        else:
            png, note = _histogram_png(self.report, str(feature))
        self._show(self.histogram, self.histogram_note, png, note)

    def _draw_trend(self) -> None:
        png, note = _trend_png(self.report)
        self._show(self.trend, self.trend_note, png, note)

    @staticmethod
    def _show(image: widgets.Image, note: widgets.HTML, png: bytes, text: str) -> None:
        image.value = png
        image.layout.display = "block" if png else "none"
        note.value = _note_html(text)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = super()._repr_mimebundle_(**kwargs) or {}
        data["text/html"] = drift_html(self.report)
        return data


def drift_panel(report: DriftReport, feature: str | None = None) -> DriftPanel:
    """The live drift panel of ``report`` (display it, or let it be a cell's last expression); ``feature`` is the
    feature whose histograms it shows first (default: the first drifted one).

    Example:
        >>> panel = drift_panel(ray_deploy.get("iris").drift_report())   # doctest: +SKIP
    """
    return DriftPanel(report, feature=feature)


def _img(png: bytes, alt: str, caption: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return (
        f"<figure style='display:inline-block;margin:4px'><img alt='{html.escape(alt, quote=True)}' "
        f"src='data:image/png;base64,{encoded}'/><figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def drift_html(report: DriftReport) -> str:
    """The report as static HTML: verdict line, per-feature table, histograms of the drifted features (or of the
    first feature when none drifted) and the trend, as inline PNGs.

    Example:
        >>> from IPython.display import HTML
        >>> HTML(drift_html(report))   # doctest: +SKIP
    """
    features = _features(report)
    shown = [f for f in report.drifted_features if f in features][:_MAX_STATIC_HISTOGRAMS] or features[:1]
    figures, notes = [], []
    for feature in shown:
        png, note = _histogram_png(report, feature)
        if png:
            figures.append(_img(png, f"histograms of {feature}", f"{feature}: reference vs live"))
        else:
            notes.append(note)
    png, note = _trend_png(report)
    if png:
        figures.append(_img(png, "drift trend", "drift across windows"))
    else:
        notes.append(note)
    notes_html = "".join(f"<div>{_note_html(n)}</div>" for n in notes)
    return (
        f"<div class='ray-deploy-drift'>{verdict_html(report)}{drift_table_html(report)}"
        f"<div>{''.join(figures)}</div>{notes_html}</div>"
    )

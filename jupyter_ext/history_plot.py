"""Render a deployment's traffic history (QPS and p50/p99 latency) as a small PNG (matplotlib, offline, no pyplot).

The points are the ``history`` of the status document, kept in the cluster by the deployment's Monitor
(10 s buckets, 30 minutes); this module only draws them, so the picture survives export to HTML and closed
networks, and a card drawn after a kernel restart shows the same history as the side panel.

Example:
    >>> png = history_png([HistoryPoint(t=0.0, qps=1.0, p50_ms=3.0, p99_ms=9.0, errors=0),
    ...                    HistoryPoint(t=10.0, qps=4.0, p50_ms=3.5, p99_ms=12.0, errors=1)])
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from ray_deploy.documents import HistoryPoint

__all__ = ["HistoryPoint", "history_png"]

_WIDTH_IN, _HEIGHT_IN, _DPI = 4.2, 1.6, 80
_MINUTES_FROM_S = 180.0  # a history longer than this is drawn in minutes


def history_png(points: Sequence[HistoryPoint]) -> bytes:
    """Draw QPS (left axis) and p50/p99 latency (right axis) against the time before the newest point.

    Example:
        >>> len(history_png([])) > 0     # an empty history still renders a labelled, empty plot
        True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_WIDTH_IN, _HEIGHT_IN), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    latency_ax = ax.twinx()
    newest = points[-1].t if points else 0.0
    span = newest - points[0].t if points else 0.0
    unit, scale = ("minutes", 60.0) if span > _MINUTES_FROM_S else ("seconds", 1.0)
    ages = [(p.t - newest) / scale for p in points]
    ax.plot(ages, [p.qps for p in points], color="tab:blue", linewidth=1.5, label="QPS")
    latency_ax.plot(ages, [_nan(p.p50_ms) for p in points], color="tab:green", linewidth=1, label="p50 ms")
    latency_ax.plot(ages, [_nan(p.p99_ms) for p in points], color="tab:red", linewidth=1, label="p99 ms")
    ax.set_ylabel("QPS", fontsize=7, color="tab:blue")
    latency_ax.set_ylabel("ms (p50, p99)", fontsize=7)
    ax.set_xlabel(f"{unit} ago", fontsize=7)
    ax.set_ylim(bottom=0)
    latency_ax.set_ylim(bottom=0)
    for axis in (ax, latency_ax):
        axis.tick_params(labelsize=6)
    if not points:
        ax.text(0.5, 0.5, "no traffic yet", transform=ax.transAxes, ha="center", va="center", fontsize=8)
    handles = ax.get_legend_handles_labels()[0] + latency_ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=6, loc="upper left", frameon=False, ncol=3)
    fig.tight_layout(pad=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)

"""What ``Deployment.drift_report()`` hands a notebook user: the last window's drift, as a table, HTML and plots.

:class:`DriftReport` wraps the wire document (a ``documents.DriftSection`` dict) and the window's histograms
(``drift.histograms``); it computes nothing the Monitor did not already decide. Plots are built on
``matplotlib.figure.Figure`` (no pyplot, no display needed), so they render offline and in headless kernels.
pandas and matplotlib load with this module, which ``import ray_deploy`` does not import.

Example:
    >>> report = DriftReport.from_document({"section": section, "histograms": hists})
    >>> report.verdict, report.drifted_features
    (True, ['age'])
    >>> report.table.query("drifted")[["feature", "test", "adjusted_p_value"]]
    >>> fig = report.plot()  # reference vs window histograms of the drifted features
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from ray_deploy.documents import DriftSection

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TABLE_COLUMNS = [
    "feature",
    "kind",
    "test",
    "statistic",
    "p_value",
    "adjusted_p_value",
    "effect_size",
    "psi",
    "wasserstein",
    "drifted",
]

_NO_VERDICT = {
    "no_reference": "no reference data for this version: drift is not measured",
    "collecting": "collecting the first window: no verdict yet",
}


@dataclass(frozen=True)
class DriftReport:
    """The last closed window's drift verdict for one deployment.

    Attributes:
        section: The validated ``documents.DriftSection``.
        histograms: Reference and window counts per feature (``drift.histograms`` output; may be empty).

    Example:
        >>> report = deployment.drift_report()
        >>> report.state
        'warning'
    """

    section: DriftSection
    histograms: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> DriftReport:
        """Build the report from ``{"section": <DriftSection dict>, "histograms": <histograms(...)>}``.

        Example:
            >>> DriftReport.from_document({"section": section, "histograms": {}}).state
            'ok'
        """
        return cls(DriftSection.model_validate(doc["section"]), dict(doc.get("histograms") or {}))

    @property
    def state(self) -> str:
        """``ok``, ``warning``, ``alarm``, ``collecting`` or ``no_reference``.

        Example:
            >>> report.state
            'alarm'
        """
        return self.section.state

    @property
    def verdict(self) -> bool | None:
        """Whether the last window drifted as a whole; None before a window closed.

        Example:
            >>> report.verdict
            True
        """
        return self.section.drifted

    @property
    def drifted_features(self) -> list[str]:
        """The features that drifted in the last window.

        Example:
            >>> report.drifted_features
            ['age', 'prediction']
        """
        return list(self.section.drifted_features)

    @property
    def auc(self) -> float | None:
        """The last window's domain-classifier AUC (0.5 = reference and window look alike).

        Example:
            >>> report.auc
            0.53
        """
        return self.section.auc

    @property
    def message(self) -> str:
        """One line for a person.

        Example:
            >>> report.message
            'drift in age (KS D 0.21)'
        """
        return self.section.message or _NO_VERDICT.get(self.state, "")

    @property
    def table(self) -> pd.DataFrame:
        """Per-feature tests of the last window, one row per feature (empty before a window closed).

        Example:
            >>> report.table.columns.tolist()[:4]
            ['feature', 'kind', 'test', 'statistic']
        """
        rows = [f.model_dump() for f in self.section.features]
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)

    @property
    def trend(self) -> pd.DataFrame:
        """The recent closed windows, oldest first: t, rows, share_drifted, auc, drifted, level, features.

        Example:
            >>> report.trend[["share_drifted", "level"]].tail(1)
        """
        columns = ["t", "rows", "drifted_features", "share_drifted", "auc", "drifted", "level"]
        frame = pd.DataFrame([p.model_dump() for p in self.section.trend], columns=columns)
        frame.insert(1, "time", pd.to_datetime(frame["t"], unit="s", utc=True))
        return frame

    def _verdict_line(self) -> str:
        if self.state in _NO_VERDICT:
            return _NO_VERDICT[self.state]
        verdict = "drifted" if self.verdict else "no drift"
        auc = "n/a" if self.auc is None else f"{self.auc:.3f}"
        features = ", ".join(self.drifted_features) or "none"
        return f"{self.state}: last window {verdict}; drifted features: {features}; domain AUC {auc}"

    def __repr__(self) -> str:
        return f"DriftReport({self._verdict_line()})"

    def _repr_html_(self) -> str:
        colours = {"ok": "#1a7f37", "warning": "#9a6700", "alarm": "#cf222e"}
        colour = colours.get(self.state, "#57606a")
        parts = [
            '<div class="ray-deploy-drift-report">',
            f'<p><b style="color:{colour}">{html.escape(self.state)}</b> — {html.escape(self._verdict_line())}</p>',
        ]
        if self.message and self.message != self._verdict_line():
            parts.append(f"<p>{html.escape(self.message)}</p>")
        table = self.table
        if len(table):
            head = "".join(f"<th>{html.escape(c)}</th>" for c in TABLE_COLUMNS)
            parts.append(f'<table style="border-collapse:collapse"><thead><tr>{head}</tr></thead><tbody>')
            for row in table.itertuples(index=False):
                style = ' style="background:#ffebe9"' if row.drifted else ""
                cells = "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row)
                parts.append(f"<tr{style}>{cells}</tr>")
            parts.append("</tbody></table>")
        parts.append("</div>")
        return "".join(parts)

    def plot(self, feature: str | None = None) -> Figure:
        """Reference vs window histograms: of ``feature``, or of every drifted feature (all features if none).

        Args:
            feature: One feature name, or None.

        Returns:
            A matplotlib Figure (shown inline by Jupyter; ``fig.savefig(...)`` to keep it).

        Raises:
            KeyError: if ``feature`` has no histogram (the message lists those that do).

        Example:
            >>> report.plot("age").savefig("age.png")
        """
        from matplotlib.figure import Figure

        if feature is not None and feature not in self.histograms:
            raise KeyError(f"no histogram for feature {feature!r}; features: {sorted(self.histograms)}")
        names = [feature] if feature else [f for f in self.drifted_features if f in self.histograms]
        if not names and feature is None:
            names = list(self.histograms)
        if not names:
            fig = Figure(figsize=(6, 1.5))
            ax = fig.add_subplot()
            ax.axis("off")
            ax.text(0.5, 0.5, self._verdict_line(), ha="center", va="center", wrap=True)
            return fig
        cols = min(3, len(names))
        rows = math.ceil(len(names) / cols)
        fig = Figure(figsize=(4.5 * cols, 3.2 * rows), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, name in zip(axes.flat, names, strict=False):
            _plot_histogram(ax, name, self.histograms[name], name in self.drifted_features)
        for ax in list(axes.flat)[len(names) :]:
            ax.axis("off")
        return fig

    def plot_trend(self) -> Figure:
        """Share of drifted features and domain-classifier AUC per closed window.

        Example:
            >>> report.plot_trend().savefig("trend.png")
        """
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 3), layout="constrained")
        ax = fig.add_subplot()
        trend = self.trend
        if not len(trend):
            ax.axis("off")
            ax.text(0.5, 0.5, "no closed windows yet: " + self._verdict_line(), ha="center", va="center")
            return fig
        x = trend["time"].dt.tz_localize(None)
        ax.plot(x, trend["share_drifted"], marker="o", label="share of features drifted")
        ax.plot(x, trend["auc"].astype(float), marker="s", label="domain-classifier AUC")
        drifted = trend["drifted"].astype(bool)
        ax.scatter(x[drifted], trend["share_drifted"][drifted], color="#cf222e", zorder=3, label="window drifted")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("window closed (UTC)")
        ax.set_title(f"drift trend: {self.state}")
        ax.legend(loc="upper left", fontsize="small")
        fig.autofmt_xdate()
        return fig


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _plot_histogram(ax: Any, name: str, hist: dict[str, Any], drifted: bool) -> None:
    """Reference and window shares side by side on one axis."""
    ref = [float(c) for c in hist["reference"]]
    win = [float(c) for c in hist["window"]]
    ref_total, win_total = sum(ref) or 1.0, sum(win) or 1.0
    ref_share = [c / ref_total for c in ref]
    win_share = [c / win_total for c in win]
    if hist["kind"] == "numeric":
        edges = hist["edges"]
        ax.stairs(ref_share, edges, fill=True, alpha=0.4, label="reference")
        ax.stairs(win_share, edges, linewidth=2, label="window")
    else:
        labels = hist["categories"]
        positions = list(range(len(labels)))
        ax.bar([p - 0.2 for p in positions], ref_share, width=0.4, alpha=0.6, label="reference")
        ax.bar([p + 0.2 for p in positions], win_share, width=0.4, label="window")
        ax.set_xticks(positions, labels, rotation=45, ha="right", fontsize="small")
    ax.set_title(f"{name} (drifted)" if drifted else name, color="#cf222e" if drifted else "black")
    ax.set_ylabel("share of rows")
    ax.legend(fontsize="small")

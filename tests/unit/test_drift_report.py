"""DriftReport: the notebook view of a drift section (table, verdict, HTML, plots), also before any verdict."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from ray_deploy.alarms import AlarmState, alarm_event, next_alarm
from ray_deploy.config import DriftSpec
from ray_deploy.drift import ReferenceProfile, WindowSummary, compare, histograms, trend_point
from ray_deploy.drift_report import TABLE_COLUMNS, DriftReport

SPEC = DriftSpec()


@pytest.fixture(scope="module")
def document() -> dict:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"age": rng.normal(40, 10, 5000), "income": rng.normal(size=5000)})
    ref["plan"] = rng.choice(["basic", "pro"], len(ref))
    profile = ReferenceProfile.build(ref, (ref["age"] > 40).astype(int).to_numpy(), SPEC)
    state, trend, last_alarm = AlarmState(), [], None
    for i, shift in enumerate([0.0, 8.0, 8.0]):
        cur = pd.DataFrame({"age": rng.normal(40 + shift, 10, 500), "income": rng.normal(size=500)})
        cur["plan"] = rng.choice(["basic", "pro", "team"] if shift else ["basic", "pro"], len(cur))
        window = WindowSummary(profile, SPEC, started_at=1000.0 + 60 * i)
        window.add(cur, (cur["age"] > 40).astype(int).to_numpy(), t=1059.0 + 60 * i)
        result = compare(profile, window, SPEC, domain_classifier=False)
        new = next_alarm(state, result.drifted, SPEC)
        if new.level != state.level:
            last_alarm = alarm_event(i, result.end, state, new, result, "1")
        state = new
        trend.append(trend_point(result, state.level))
    section = {
        "state": state.level,
        "message": f"drift in {', '.join(result.drifted_features)}",
        "version": "1",
        "reference_rows": profile.rows,
        "window_rows": 0,
        "windows": 3,
        "last_window_end": result.end,
        "drifted": result.drifted,
        "drifted_features": result.drifted_features,
        "auc": result.auc,
        "features": result.features,
        "trend": trend,
        "last_alarm": last_alarm,
    }
    return {"section": section, "histograms": histograms(profile, window)}


def empty(state: str) -> dict:
    section = {
        "state": state,
        "message": "",
        "version": None,
        "reference_rows": 0,
        "window_rows": 12,
        "windows": 0,
        "last_window_end": None,
        "drifted": None,
        "drifted_features": [],
        "auc": None,
        "features": [],
        "trend": [],
        "last_alarm": None,
    }
    return {"section": section, "histograms": {}}


def png(fig: object) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # type: ignore[attr-defined]
    return buf.getvalue()


def test_table_verdict_and_trend(document: dict) -> None:
    report = DriftReport.from_document(document)
    assert report.state == "alarm" and report.verdict is True
    assert "age" in report.drifted_features and "income" not in report.drifted_features
    table = report.table
    assert table.columns.tolist() == TABLE_COLUMNS
    assert table["feature"].tolist() == ["age", "income", "plan", "prediction"]
    assert set(table.loc[table["drifted"], "feature"]) == set(report.drifted_features)
    assert table.set_index("feature").loc["income", "test"] == "ks"
    assert report.trend["level"].tolist() == ["ok", "warning", "alarm"]
    assert report.trend["time"].iloc[0] == pd.Timestamp(1059.0, unit="s", tz="UTC")


def test_html_highlights_drifted_rows_and_loads_nothing(document: dict) -> None:
    text = DriftReport.from_document(document)._repr_html_()
    assert "alarm" in text and "drifted features: age" in text
    assert text.count('style="background:#ffebe9"') == len(document["section"]["drifted_features"])
    assert "<script" not in text and "http" not in text
    assert "DriftReport(alarm" in repr(DriftReport.from_document(document))


def test_plots_render(document: dict) -> None:
    report = DriftReport.from_document(document)
    fig = report.plot()
    assert len([ax for ax in fig.axes if ax.get_visible() and ax.axison]) == len(report.drifted_features)
    assert png(fig).startswith(b"\x89PNG")
    assert png(report.plot("income")).startswith(b"\x89PNG")
    assert png(report.plot("plan")).startswith(b"\x89PNG")
    assert png(report.plot_trend()).startswith(b"\x89PNG")
    with pytest.raises(KeyError, match="features: \\['age', 'income', 'plan', 'prediction'\\]"):
        report.plot("nope")


@pytest.mark.parametrize("state", ["no_reference", "collecting"])
def test_without_a_verdict_everything_still_works(state: str) -> None:
    report = DriftReport.from_document(empty(state))
    assert report.verdict is None and report.auc is None and report.drifted_features == []
    assert report.table.empty and report.table.columns.tolist() == TABLE_COLUMNS
    assert report.trend.empty
    words = "no reference data" if state == "no_reference" else "collecting the first window"
    assert words in report._repr_html_() and words in report.message
    assert png(report.plot()).startswith(b"\x89PNG")
    assert png(report.plot_trend()).startswith(b"\x89PNG")

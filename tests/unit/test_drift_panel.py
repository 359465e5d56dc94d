"""The inline drift panel: verdict line, per-feature table, histograms with a feature picker, trend; the static HTML
fallback; for a drifted report and for reports without a verdict yet (collecting, no reference)."""

from __future__ import annotations

import base64
import copy
from typing import Any

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from jupyter_ext.drift_panel import DriftPanel, drift_badge_html, drift_html, drift_panel  # noqa: E402
from ray_deploy.documents import DriftSection  # noqa: E402
from ray_deploy.drift_report import DriftReport  # noqa: E402
from ray_deploy.errors import ConfigError  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def feature(name: str, effect: float, drifted: bool, kind: str = "numeric") -> dict[str, Any]:
    return {
        "feature": name,
        "kind": kind,
        "test": "ks" if kind == "numeric" else "chi2",
        "statistic": effect,
        "p_value": 1e-5 if drifted else 0.5,
        "adjusted_p_value": 1e-4 if drifted else 0.7,
        "effect_size": effect,
        "psi": 0.3 if drifted else 0.01,
        "wasserstein": 0.4 if kind == "numeric" else None,
        "drifted": drifted,
    }


def trend_point(t: float, drifted: list[str], level: str = "ok") -> dict[str, Any]:
    return {
        "t": t,
        "rows": 200,
        "drifted_features": drifted,
        "share_drifted": len(drifted) / 3,
        "auc": 0.6 if drifted else 0.5,
        "drifted": bool(drifted),
        "level": level,
    }


SECTION: dict[str, Any] = {
    "state": "warning",
    "message": "petal_length drifted in 2 of the last 3 windows",
    "version": "3",
    "reference_rows": 150,
    "window_rows": 40,
    "windows": 3,
    "last_window_end": 1030.0,
    "drifted": True,
    "drifted_features": ["petal_length"],
    "auc": 0.64,
    "features": [
        feature("sepal_width", 0.05, False),
        feature("petal_length", 0.31, True),
        feature("prediction", 0.08, False, kind="categorical"),
    ],
    "trend": [
        trend_point(1010.0, []),
        trend_point(1020.0, ["petal_length"]),
        trend_point(1030.0, ["petal_length"], "warning"),
    ],
    "last_alarm": {
        "seq": 0,
        "t": 1030.0,
        "level": "warning",
        "previous": "ok",
        "version": "3",
        "window_start": 1020.0,
        "window_end": 1030.0,
        "rows": 200,
        "drifted_features": ["petal_length"],
        "auc": 0.64,
    },
}
HISTOGRAMS: dict[str, Any] = {
    "sepal_width": {
        "kind": "numeric",
        "edges": [2.0, 2.5, 3.0, 3.5, 4.0],
        "reference": [10, 50, 60, 30],
        "window": [3, 15, 16, 6],
    },
    "petal_length": {
        "kind": "numeric",
        "edges": [1.0, 2.5, 4.0, 5.5, 7.0],
        "reference": [50, 30, 50, 20],
        "window": [2, 5, 13, 20],
    },
    "prediction": {
        "kind": "categorical",
        "categories": ["setosa", "versicolor", "virginica"],
        "reference": [50, 50, 50],
        "window": [10, 14, 16],
    },
}


def section(**changes: Any) -> dict[str, Any]:
    doc = {**copy.deepcopy(SECTION), **changes}
    DriftSection.model_validate(doc)  # only sections the cluster could send
    return doc


def waiting_section(state: str, message: str) -> dict[str, Any]:
    """A section before any verdict: nothing tested, no trend."""
    return section(
        state=state,
        message=message,
        reference_rows=150 if state == "collecting" else 0,
        windows=0,
        last_window_end=None,
        drifted=None,
        drifted_features=[],
        auc=None,
        features=[],
        trend=[],
        last_alarm=None,
    )


@pytest.fixture()
def drifted() -> DriftReport:
    return DriftReport.from_document({"section": section(), "histograms": copy.deepcopy(HISTOGRAMS)})


@pytest.fixture()
def collecting() -> DriftReport:
    waiting = waiting_section("collecting", "collecting the first window: 40 of 200 rows")
    return DriftReport.from_document({"section": waiting, "histograms": {}})


@pytest.fixture()
def no_reference() -> DriftReport:
    waiting = waiting_section("no_reference", "no reference data: deploy with a sample to compare against")
    return DriftReport.from_document({"section": waiting, "histograms": {}})


def images_in(page: str) -> list[bytes]:
    return [base64.b64decode(part.split("'")[0]) for part in page.split("data:image/png;base64,")[1:]]


def test_panel_of_a_drifted_report_shows_verdict_table_histograms_and_trend(drifted: DriftReport) -> None:
    panel = drift_panel(drifted)
    assert isinstance(panel, DriftPanel)
    verdict = panel.verdict.value
    assert "data-state='warning'" in verdict and "drift warning" in verdict
    assert "drifted: <b>petal_length</b>" in verdict
    assert "AUC 0.64" in verdict and "200 rows in the last window" in verdict
    table = panel.table.value
    rows = table.split("<tr")[2:]  # after the header: drifted first, then by effect size
    names = [r.split("<td")[1].split(">")[1].split("<")[0] for r in rows]
    assert names == ["petal_length", "prediction", "sepal_width"]
    assert "ray-deploy-drifted" in rows[0] and "drifted" in rows[0] and "0.31 (KS D)" in rows[0]
    assert "ray-deploy-drifted" not in rows[1] and "0.08 (JS distance)" in rows[1]
    assert [panel.tabs.get_title(i) for i in range(3)] == ["Features", "Histograms", "Trend"]
    assert panel.feature.options == ("sepal_width", "petal_length", "prediction")
    assert panel.feature.value == "petal_length"  # the first drifted feature
    assert bytes(panel.histogram.value).startswith(PNG) and panel.histogram.layout.display == "block"
    assert bytes(panel.trend.value).startswith(PNG) and panel.trend_note.value == ""
    panel.close()


def test_the_feature_picker_redraws_the_histograms(drifted: DriftReport) -> None:
    panel = drift_panel(drifted)
    first = bytes(panel.histogram.value)
    panel.feature.value = "prediction"  # a categorical feature
    categorical = bytes(panel.histogram.value)
    assert categorical.startswith(PNG) and categorical != first
    assert drift_panel(drifted, feature="sepal_width").feature.value == "sepal_width"
    with pytest.raises(ConfigError, match="no drift test of feature 'nope'"):
        drift_panel(drifted, feature="nope")
    panel.close()


@pytest.mark.parametrize(
    ("fixture", "badge", "message"),
    [
        ("collecting", "drift collecting", "collecting the first window: 40 of 200 rows"),
        ("no_reference", "drift no reference", "no reference data: deploy with a sample"),
    ],
)
def test_panel_without_a_verdict_says_why_and_draws_nothing(
    fixture: str, badge: str, message: str, request: pytest.FixtureRequest
) -> None:
    report: DriftReport = request.getfixturevalue(fixture)
    panel = drift_panel(report)
    assert badge in panel.verdict.value and message in panel.verdict.value
    assert "drifted:" not in panel.verdict.value and "AUC" not in panel.verdict.value
    assert "no feature tests yet" in panel.table.value
    assert panel.feature.options == () and panel.feature.layout.display == "none"
    assert panel.histogram.layout.display == "none" and "no feature tests yet" in panel.histogram_note.value
    assert panel.trend.layout.display == "none" and "no window has closed yet" in panel.trend_note.value
    page = drift_html(report)
    assert badge in page and "no feature tests yet" in page and "data:image/png" not in page
    panel.close()


def test_static_html_has_the_table_and_the_images(drifted: DriftReport) -> None:
    page = drift_html(drifted)
    assert "<table class='ray-deploy-drift-table'>" in page
    assert page.count("<tr") == 4  # header and three features
    assert "petal_length: reference vs live" in page and "drift across windows" in page
    images = images_in(page)
    assert len(images) == 2 and all(image.startswith(PNG) for image in images)  # drifted feature, trend


def test_static_html_without_drift_shows_the_first_feature(drifted: DriftReport) -> None:
    calm = section(state="ok", message="no drift", drifted=False, drifted_features=[], auc=0.5)
    calm["features"] = [{**f, "drifted": False} for f in calm["features"]]
    report = DriftReport.from_document({"section": calm, "histograms": copy.deepcopy(HISTOGRAMS)})
    page = drift_html(report)
    assert "no feature drifted" in page and "ray-deploy-drifted" not in page
    assert "sepal_width: reference vs live" in page and len(images_in(page)) == 2


def test_mimebundle_carries_the_static_fallback(drifted: DriftReport) -> None:
    panel = drift_panel(drifted)
    bundle = panel._repr_mimebundle_()
    assert bundle["text/html"] == drift_html(drifted)
    assert "application/vnd.jupyter.widget-view+json" in bundle
    panel.close()


def test_badge_names_the_drifted_features_and_escapes_them() -> None:
    badge = drift_badge_html("alarm", ["a<b", "c"], "2 features drifted")
    assert "data-state='alarm'" in badge and ">drift alarm<" in badge
    assert "title='drifted: a&lt;b, c; 2 features drifted'" in badge
    assert "title='drift ok'" in drift_badge_html("ok")

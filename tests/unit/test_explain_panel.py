"""The inline explanation panel: widget state, PNG images, and pickers that redraw them; the static HTML."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402

from jupyter_ext.explain_panel import ExplainPanel, explain_html, explain_panel  # noqa: E402
from ray_deploy.errors import ConfigError  # noqa: E402
from ray_deploy.explain import explain_model  # noqa: E402
from ray_deploy.explanation import Explanation  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def multi() -> Explanation:
    X, y = make_classification(40, 4, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(frame, y)
    return explain_model(model, "sklearn", frame, predict_method="predict_proba")


@pytest.fixture(scope="module")
def single() -> Explanation:
    X, y = make_regression(30, 3, random_state=0)
    return explain_model(LinearRegression().fit(X, y), "sklearn", X)


def test_panel_state_and_images(multi: Explanation) -> None:
    panel = explain_panel(multi)
    assert isinstance(panel, ExplainPanel)
    assert panel.row.max == 39 and panel.row.value == 0
    assert panel.output.options == (("class 0", 0), ("class 1", 1)) and panel.output.value == 1
    assert panel.output.layout.display == "flex"
    assert panel.feature.options == ("a", "b", "c", "d")
    assert panel.feature.value == multi.importance().index[0]
    for image in (panel.waterfall, panel.bar, panel.beeswarm, panel.dependence):
        assert bytes(image.value).startswith(PNG)
    assert [panel.tabs.get_title(i) for i in range(4)] == ["Row", "Importance", "Beeswarm", "Dependence"]


def test_pickers_redraw(multi: Explanation) -> None:
    panel = explain_panel(multi)
    waterfall, dependence, bar = (bytes(i.value) for i in (panel.waterfall, panel.dependence, panel.bar))
    panel.row.value = 5
    assert bytes(panel.waterfall.value) != waterfall and bytes(panel.waterfall.value).startswith(PNG)
    panel.feature.value = next(f for f in panel.feature.options if f != panel.feature.value)
    assert bytes(panel.dependence.value) != dependence
    before = bytes(panel.waterfall.value)
    panel.output.value = 0
    assert bytes(panel.bar.value) != bar and bytes(panel.waterfall.value) != before


def test_initial_row(single: Explanation) -> None:
    assert explain_panel(single, row=4).row.value == 4
    with pytest.raises(ConfigError, match="row 30"):
        explain_panel(single, row=30)


def test_single_output_hides_output_picker(single: Explanation) -> None:
    panel = explain_panel(single)
    assert panel.output.layout.display == "none"
    assert panel.output.options == (("prediction", 0),)
    assert bytes(panel.waterfall.value).startswith(PNG)


def test_static_html(multi: Explanation) -> None:
    page = explain_html(multi, row=2)
    assert page.count("data:image/png;base64,") == 3
    assert "class 1" in page and "row 2" in page
    assert np.isfinite(multi.values).all()


def _torch_explanation() -> Explanation:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    return explain_model(net, "torch", np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32))


def _callable_explanation() -> Explanation:
    frame = pd.DataFrame({"x": np.arange(10.0), "y": np.arange(10.0) * 2})
    return explain_model(lambda df: np.asarray(df)[:, 0] + 3 * np.asarray(df)[:, 1], "callable", frame)


@pytest.mark.parametrize("make", [_torch_explanation, _callable_explanation], ids=["torch", "callable"])
def test_panel_renders_for_other_model_kinds(make: object) -> None:
    explanation = make()  # type: ignore[operator]
    panel = explain_panel(explanation)
    images = [panel.waterfall.value, panel.bar.value, panel.beeswarm.value, panel.dependence.value]
    assert all(bytes(image).startswith(PNG) for image in images)
    assert explain_html(explanation).count("data:image/png;base64,") == 3

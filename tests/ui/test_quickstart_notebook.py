"""The quick start as a new user meets it: JupyterLab in Chromium opens ``01_quickstart.ipynb``, runs every cell,
and the live deployment card renders as a widget (not an error placeholder)."""

from __future__ import annotations

import re
from typing import Any

from tests.ui.conftest import ARTIFACTS, Lab, open_notebook, run_all_cells


def test_quickstart_runs_in_jupyterlab_and_shows_the_live_card(jupyter_lab: Lab, page: Any) -> None:
    open_notebook(page, jupyter_lab, "notebooks/01_quickstart.ipynb")
    prompts = run_all_cells(page)
    assert all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), f"not every cell ran (an error stops Run All): {prompts}"

    cards = page.locator(".ray-deploy-card")
    assert cards.count() >= 1, "no deployment card was rendered"
    card = cards.first
    card.scroll_into_view_if_needed()
    assert "quickstart" in card.inner_text()
    body = page.locator(".jp-Notebook").inner_text()
    assert "Error displaying widget" not in body and "Error rendering output" not in body
    card.screenshot(path=str(ARTIFACTS / "quickstart-card.png"))

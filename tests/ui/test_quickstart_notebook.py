"""The quick start as a new user meets it: JupyterLab in Chromium opens ``01_quickstart.ipynb``, runs every cell,
and the live deployment card renders as a widget (not an error placeholder)."""

from __future__ import annotations

import re
import time
from typing import Any

from tests.ui.conftest import ARTIFACTS, Lab

_RUN_TIMEOUT_S = 600


def test_quickstart_runs_in_jupyterlab_and_shows_the_live_card(jupyter_lab: Lab, page: Any) -> None:
    page.goto(jupyter_lab.url_for("/lab/tree/notebooks/01_quickstart.ipynb"))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

    prompts = _wait_until_every_cell_ran(page)
    assert all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), f"not every cell ran (an error stops Run All): {prompts}"
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, errors.first.inner_text()

    cards = page.locator(".ray-deploy-card")
    assert cards.count() >= 1, "no deployment card was rendered"
    card = cards.first
    card.scroll_into_view_if_needed()
    assert "quickstart" in card.inner_text()
    body = page.locator(".jp-Notebook").inner_text()
    assert "Error displaying widget" not in body and "Error rendering output" not in body
    card.screenshot(path=str(ARTIFACTS / "quickstart-card.png"))


def _wait_until_every_cell_ran(page: Any) -> list[str]:
    """Wait until no cell is queued or running, then return every code cell's prompt text."""
    deadline = time.monotonic() + _RUN_TIMEOUT_S
    prompts: list[str] = []
    while time.monotonic() < deadline:
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        prompts = [p.strip() for p in prompts]
        if prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            return prompts
        if prompts and not any("*" in p for p in prompts) and any(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            return prompts  # Run All stopped before the end (a cell raised): report it
        time.sleep(1.0)
    raise AssertionError(f"the notebook did not finish within {_RUN_TIMEOUT_S} s; prompts: {prompts}")

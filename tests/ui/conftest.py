"""Browser tests: a real JupyterLab server started by the tests and real headless Debian Chromium (Playwright).

The browser is never downloaded: it is the Debian ``chromium`` package. Where it is missing these tests skip with
the install command, except when ``RAY_DEPLOY_REQUIRE_BROWSER=1`` (set by ``.ci/run``): then they fail.
Screenshots and the JupyterLab log go to ``test-artifacts/`` (or ``RAY_DEPLOY_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

import ray_deploy

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RAY_DEPLOY_TEST_ARTIFACTS", REPO / "test-artifacts"))
_CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# JupyterLab's first-run news prompt would cover the page.
_PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
# Every cell stays in the page (no windowing), so the tests can read every cell's prompt.
_USER_SETTINGS = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"}}


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: its base URL, token and the folder it serves."""

    url: str
    token: str
    root: Path

    def url_for(self, path: str) -> str:
        """A URL of this server with the token, e.g. ``lab.url_for("/lab/tree/notebooks/a.ipynb")``."""
        return f"{self.url}{path}?token={self.token}"

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Call the server's REST API with the token (as a script or the frontend would)."""
        headers = {"Authorization": f"token {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=60, **kwargs)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Path of Debian's Chromium; skip (or fail under RAY_DEPLOY_REQUIRE_BROWSER=1) when it is missing."""
    path = shutil.which("chromium")
    if path is None:
        message = "Debian Chromium not found; install it with `apt-get install chromium` (never downloaded)"
        if os.environ.get("RAY_DEPLOY_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def jupyter_lab(cluster: ray_deploy.ClusterInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A real JupyterLab (token auth on) serving a copy of ``notebooks/``; its kernels join the test cluster."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    config_dir = root / ".jupyter"
    (config_dir / "labconfig").mkdir(parents=True)
    (config_dir / "labconfig" / "page_config.json").write_text(json.dumps(_PAGE_CONFIG))
    for relative, settings in _USER_SETTINGS.items():
        (root / ".settings" / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / ".settings" / relative).write_text(json.dumps(settings))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.workspaces_dir={root / '.workspaces'}",
        f"--LabApp.user_settings_dir={root / '.settings'}",
    ]
    if os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir), "JUPYTER_RUNTIME_DIR": str(root / ".runtime")}
    log = (ARTIFACTS / "jupyterlab.log").open("w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    lab = Lab(f"http://127.0.0.1:{port}", token, root)
    try:
        _wait_until_up(lab, server)
        yield lab
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture()
def page(chromium_path: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh headless Chromium page; a screenshot named after the test is saved when the test ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=_CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1000})
        tab = context.new_page()
        try:
            yield tab
        finally:
            tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}-final.png"))
            browser.close()


def open_notebook(page: Any, lab: Lab, path: str) -> None:
    """Open a notebook in JupyterLab and start its kernel as a user would (accepting the kernel dialog)."""
    page.goto(lab.url_for(f"/lab/tree/{path}"))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(timeout=10_000)
    except Exception:  # noqa: BLE001 - no dialog: the kernel starts by itself
        return
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    dialog.wait_for(state="detached", timeout=30_000)


def run_all_cells(page: Any, timeout_s: float = 600.0) -> list[str]:
    """Run every cell from the Run menu; wait until none is queued or running; return the code cells' prompts.

    A cell that raises stops "Run All", so every prompt numbered (``[3]:``) means every cell ran without error.
    """
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    deadline = time.monotonic() + timeout_s
    prompts: list[str] = []
    while time.monotonic() < deadline:
        prompts = [p.strip() for p in page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()]
        ran = [bool(re.fullmatch(r"\[\d+\]:", p)) for p in prompts]
        if prompts and (all(ran) or (any(ran) and not any("*" in p for p in prompts))):
            return prompts
        time.sleep(1.0)
    raise AssertionError(f"the notebook did not finish within {timeout_s:.0f} s; prompts: {prompts}")


def _wait_until_up(lab: Lab, server: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {server.returncode}; see {ARTIFACTS / 'jupyterlab.log'}")
        try:
            if lab.api("GET", "/api/status").status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer within {timeout_s:.0f} s; see {ARTIFACTS / 'jupyterlab.log'}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

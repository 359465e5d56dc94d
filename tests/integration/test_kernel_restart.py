"""Real Jupyter kernels: deployments survive a kernel restart, an interrupt stops %deploy cleanly, progress
updates in place, and the shipped IPython config loads the extension by itself.

The kernels inherit the test environment (ports, RAY_DEPLOY_HOME), so they join the session's local head.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from jupyter_client import KernelManager
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager

import ray_deploy
from tests.integration.api import auth

REPO = Path(__file__).resolve().parents[2]
SHIPPED_KERNEL_CONFIG = REPO / "jupyter-config" / "ipython" / "ipython_kernel_config.json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

MODEL_CELL = """
import numpy as np

def triple(data):
    return np.asarray(data, dtype=float).sum(axis=1) * 3

rows = np.array([[1.0, 2.0]])
"""

SLOW_MODEL_CELL = """
import time
import mlflow

class SlowToLoad(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        time.sleep(300)

    def predict(self, context, model_input, params=None):
        return model_input
"""


@dataclass
class Reply:
    """What one execution sent back on iopub, plus its execute_reply."""

    status: str = ""
    stdout: str = ""
    stderr: str = ""
    displays: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    comm_updates: int = 0
    comm_values: list[Any] = field(default_factory=list)


class Kernel:
    """A real IPython kernel with a blocking client."""

    def __init__(self, extra_env: dict[str, str] | None = None, kernels_dir: Path | None = None) -> None:
        if kernels_dir is None:
            self.manager = KernelManager(kernel_name="python3")
        else:
            specs = KernelSpecManager(kernel_dirs=[str(kernels_dir)])
            self.manager = KernelManager(kernel_name="env", kernel_spec_manager=specs)
        self.manager.start_kernel(env={**os.environ, **(extra_env or {})})
        self.client = self._client()

    def _client(self) -> BlockingKernelClient:
        client = self.manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=120)
        return client

    def execute(self, code: str, timeout_s: float = 600, until: Any = None) -> Reply:
        """Run ``code``; ``until(reply)`` is called on every iopub message and may act (e.g. interrupt)."""
        msg_id = self.client.execute(code)
        reply = Reply()
        deadline = time.time() + timeout_s
        while True:
            if time.time() > deadline:
                raise AssertionError(f"no reply within {timeout_s}s to {code!r}; so far: {reply}")
            try:
                msg = self.client.get_iopub_msg(timeout=1)
            except queue.Empty:
                if until is not None:
                    until(reply)
                continue
            content = msg["content"]
            kind = msg["msg_type"]
            if kind == "comm_msg" and content.get("data", {}).get("method") == "update":
                reply.comm_updates += 1
                reply.comm_values.append(content["data"]["state"].get("value"))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if kind == "stream":
                setattr(reply, content["name"], getattr(reply, content["name"]) + content["text"])
            elif kind == "display_data":
                reply.displays.append(content["data"])
            elif kind == "execute_result":
                reply.result = content["data"]
            elif kind == "error":
                reply.error = "\n".join(content["traceback"])
            elif kind == "status" and content["execution_state"] == "idle":
                break
            if until is not None:
                until(reply)
        reply.status = self.client.get_shell_msg(timeout=timeout_s)["content"]["status"]
        return reply

    def restart(self) -> None:
        self.client.stop_channels()
        self.manager.restart_kernel(now=True)
        self.client = self._client()

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture()
def kernel(cluster: ray_deploy.ClusterInfo) -> Iterator[Kernel]:
    k = Kernel()
    yield k
    k.shutdown()


def html_of(reply: Reply) -> str:
    return "\n".join(d.get("text/html", "") for d in reply.displays)


def test_deployments_survive_a_kernel_restart(kernel: Kernel, cleanup: list[str]) -> None:
    cleanup.append("kr-restart")
    assert kernel.execute("%load_ext jupyter_ext").status == "ok"
    assert kernel.execute(MODEL_CELL).status == "ok"
    deployed = kernel.execute("%deploy triple --name kr-restart --sample rows --cpus 0.1 -o dep")
    assert deployed.status == "ok", deployed.stderr
    assert "Error" not in deployed.stderr and "interrupted" not in deployed.stderr, deployed.stderr
    # progress: one widget shown once and updated in place, no stream of lines
    progress = [d for d in deployed.displays if "deploy kr-restart" in d.get("text/plain", "")]
    assert len(progress) == 1 and WIDGET_VIEW in progress[0]
    assert deployed.comm_updates > 0
    assert "deploy kr-restart" not in deployed.stdout
    # the live card follows the progress
    card = deployed.displays[-1]
    assert WIDGET_VIEW in card
    assert "ray-deploy: kr-restart" in card["text/html"] and "RUNNING" in card["text/html"]
    # the card refreshes from its thread while the kernel is idle or busy: real traffic reaches the frontend
    for _ in range(3):
        answer = requests.post(
            ray_deploy.get("kr-restart").url + "/predict", json={"instances": [[1, 2]]}, headers=auth(), timeout=60
        )
        assert answer.status_code == 200, answer.text
    waited = kernel.execute("import time\ntime.sleep(8)")
    assert "3" in waited.comm_values, waited.comm_values

    kernel.restart()
    assert kernel.execute("%load_ext jupyter_ext").status == "ok"
    listed = kernel.execute("%deployments")
    assert listed.status == "ok" and "Error" not in listed.stderr, listed.stderr
    assert "<td>kr-restart</td><td>RUNNING</td><td>1 (champion)</td>" in html_of(listed)
    attached = kernel.execute("import ray_deploy\ndep = ray_deploy.get('kr-restart')\ndep.version")
    assert attached.result["text/plain"] == "'1'"
    shown = kernel.execute("dep")
    assert WIDGET_VIEW in shown.result  # the live card, now that the extension is loaded
    assert "ray-deploy: kr-restart" in shown.result["text/html"]
    predicted = kernel.execute("%predict kr-restart [[1.0,2.0]]")
    assert predicted.result["text/plain"] == "array([9.])"


def test_interrupt_stops_waiting_for_deploy_cleanly(kernel: Kernel, cleanup: list[str]) -> None:
    cleanup.append("kr-interrupt")
    assert kernel.execute("%load_ext jupyter_ext").status == "ok"
    assert kernel.execute(SLOW_MODEL_CELL).status == "ok"
    sent: list[bool] = []

    def interrupt_once_starting(reply: Reply) -> None:
        # the replica sleeps in load_context, so the deploy waits at "starting replicas" until interrupted
        if not sent and reply.comm_updates >= 3 and "kr-interrupt" in ray_deploy_names():
            sent.append(True)
            kernel.manager.interrupt_kernel()

    interrupted = kernel.execute(
        "%deploy SlowToLoad() --name kr-interrupt --cpus 0.1", timeout_s=300, until=interrupt_once_starting
    )
    assert sent, "the deploy ended before it could be interrupted"
    assert interrupted.status == "ok", interrupted.error
    assert interrupted.error == ""
    lines = interrupted.stderr.strip().splitlines()
    assert lines[-1].startswith("%deploy interrupted: stopped waiting for 'kr-interrupt'"), interrupted.stderr
    assert "%undeploy kr-interrupt" in lines[-1]
    # the kernel is responsive and the cluster state is readable and removable
    assert kernel.execute("1 + 1").result["text/plain"] == "2"
    listed = kernel.execute("%deployments -o rows\n[r['name'] for r in rows]")
    assert "'kr-interrupt'" in listed.result["text/plain"]
    removed = kernel.execute("%undeploy kr-interrupt")
    assert "deleted deployment 'kr-interrupt'" in removed.stdout, removed.stderr


def ray_deploy_names() -> set[str]:
    return {d["name"] for d in ray_deploy.list_deployments()}


def test_shipped_kernel_config_loads_the_extension_from_the_environment(tmp_path: Path) -> None:
    """A kernel of an environment with the shipped file in ``<prefix>/etc/ipython`` has the magics at start.

    The environment is a fresh venv whose site-packages point at this one, so only the config file differs.
    """
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    (Path(site) / "outer_env.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n{REPO}\n")
    kernels = tmp_path / "kernels"
    (kernels / "env").mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernels / "env" / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "env", "language": "python"})
    )
    probe = "'deploy' in get_ipython().magics_manager.magics['cell']"
    bare = Kernel(kernels_dir=kernels, extra_env={"IPYTHONDIR": str(tmp_path / "ipython")})
    try:
        assert bare.execute(probe).result["text/plain"] == "False"
    finally:
        bare.shutdown()

    config_dir = env_dir / "etc" / "ipython"
    config_dir.mkdir(parents=True)
    shutil.copy(SHIPPED_KERNEL_CONFIG, config_dir / "ipython_kernel_config.json")
    assert json.loads(SHIPPED_KERNEL_CONFIG.read_text())["InteractiveShellApp"]["extra_extensions"] == ["jupyter_ext"]
    configured = Kernel(kernels_dir=kernels, extra_env={"IPYTHONDIR": str(tmp_path / "ipython")})
    try:
        assert configured.execute("import sys; sys.prefix").result["text/plain"] == repr(str(env_dir))
        assert configured.execute(probe).result["text/plain"] == "True"
        loaded = configured.execute("'jupyter_ext' in get_ipython().extension_manager.loaded")
        assert loaded.result["text/plain"] == "True"
    finally:
        configured.shutdown()

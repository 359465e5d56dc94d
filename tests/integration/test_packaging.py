"""The wheel ships the prebuilt JupyterLab side panel and the server-extension config, and installs as enabled.

The wheel is built from this tree with the labextension `make install` already built (so no Node is needed:
PATH holds only the venv's scripts), then installed without dependencies into a scratch environment whose
Jupyter paths see nothing of the development install. Every check fails, never skips, when a piece is missing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LABEXT_BUILD = REPO / "jupyter_ext" / "labextension"
LABEXT_NAME = "ray-deploy"
DATA = "ray_deploy-0.1.0.data/data"
LABEXT_IN_WHEEL = f"{DATA}/share/jupyter/labextensions/{LABEXT_NAME}"
SERVER_CONFIG_IN_WHEEL = f"{DATA}/etc/jupyter/jupyter_server_config.d/jupyter_ext.json"
KERNEL_CONFIG_IN_WHEEL = f"{DATA}/etc/ipython/ipython_kernel_config.json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Runs `cmd`; on failure the assertion shows its output. Returns stdout + stderr without colours."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    output = ANSI.sub("", proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{output}"
    return output


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this tree, with Node off the PATH."""
    assert (LABEXT_BUILD / "package.json").is_file(), (
        f"{LABEXT_BUILD} is not built; run `make install` (it builds the JupyterLab extension with npm)"
    )
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        env=env,
    )
    wheels = sorted(out.glob("ray_deploy-*.whl"))
    assert len(wheels) == 1, f"expected one ray_deploy wheel in {out}, found {[w.name for w in wheels]}"
    return wheels[0]


@pytest.fixture(scope="module")
def scratch_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with the wheel installed (no deps); the dev venv's packages are importable, its Jupyter
    data and config directories are not."""
    root = tmp_path_factory.mktemp("scratch")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site_packages = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    # the dev venv's site-packages after the scratch one: jupyterlab & co. import, the wheel's copy wins
    dev_site = sysconfig.get_paths()["purelib"]
    (site_packages / "zz_dev_venv.pth").write_text(f"import site; site.addsitedir({dev_site!r})\n")
    _run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", "--prefix", str(venv)]
        + [str(wheel)]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER") and k != "PYTHONPATH"}
    env["JUPYTER_DATA_DIR"] = str(root / "user-data")
    env["JUPYTER_CONFIG_DIR"] = str(root / "user-config")
    env["JUPYTER_RUNTIME_DIR"] = str(root / "runtime")
    env["IPYTHONDIR"] = str(root / "ipython")
    return venv, env


def test_wheel_ships_the_prebuilt_labextension(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    with zipfile.ZipFile(wheel) as zf:
        package = json.loads(zf.read(f"{LABEXT_IN_WHEEL}/package.json"))
        install = json.loads(zf.read(f"{LABEXT_IN_WHEEL}/install.json"))
    assert package["name"] == LABEXT_NAME
    remote_entry = package["jupyterlab"]["_build"]["load"]
    assert remote_entry.startswith("static/remoteEntry.") and remote_entry.endswith(".js")
    static = {n for n in names if n.startswith(f"{LABEXT_IN_WHEEL}/static/")}
    assert f"{LABEXT_IN_WHEEL}/{remote_entry}" in static
    assert f"{LABEXT_IN_WHEEL}/static/style.js" in static
    assert len([n for n in static if n.endswith(".js")]) >= 3, f"static assets missing: {sorted(static)}"
    assert install == {
        "packageManager": "python",
        "packageName": "ray-deploy",
        "uninstallInstructions": install["uninstallInstructions"],
    }
    # the sources and node_modules stay out of the wheel; the Python packages are in it
    assert not [n for n in names if "frontend/" in n or "node_modules" in n]
    assert "jupyter_ext/__init__.py" in names
    assert "ray_deploy/__init__.py" in names


def test_wheel_enables_the_server_extension_and_the_kernel_extension(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        config = json.loads(zf.read(SERVER_CONFIG_IN_WHEEL))
        kernel_config = json.loads(zf.read(KERNEL_CONFIG_IN_WHEEL))
    assert config == {"ServerApp": {"jpserver_extensions": {"jupyter_ext": True}}}
    assert kernel_config == {"InteractiveShellApp": {"extra_extensions": ["jupyter_ext"]}}


def test_installed_wheel_lists_the_labextension_enabled_and_ok(scratch_env: tuple[Path, dict[str, str]]) -> None:
    venv, env = scratch_env
    output = _run([str(venv / "bin" / "python"), "-m", "jupyterlab.labextensions", "list"], env=env)
    labext_dir = venv / "share" / "jupyter" / "labextensions"
    assert (labext_dir / LABEXT_NAME / "package.json").is_file()
    assert str(labext_dir) in output, output
    assert re.search(rf"^\s*{re.escape(LABEXT_NAME)} v0\.1\.0 enabled\s+OK \(python, ray-deploy\)\s*$", output, re.M), (
        output
    )


def test_installed_wheel_lists_the_server_extension_enabled_and_ok(
    scratch_env: tuple[Path, dict[str, str]],
) -> None:
    venv, env = scratch_env
    output = _run([str(venv / "bin" / "python"), "-m", "jupyter_server.extension.serverextension", "list"], env=env)
    config_dir = venv / "etc" / "jupyter"
    assert (config_dir / "jupyter_server_config.d" / "jupyter_ext.json").is_file()
    section = output.split(f"Config dir: {config_dir}", 1)
    assert len(section) == 2, f"{config_dir} is not among the listed config dirs:\n{output}"
    ours = section[1].split("Config dir:", 1)[0]
    assert re.search(r"^\s*jupyter_ext enabled\s*$", ours, re.M), output
    assert re.search(r"^\s*jupyter_ext\s.*\bOK\s*$", ours, re.M), output

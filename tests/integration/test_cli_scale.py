"""``ray-deploy scale`` on the real cluster: replicas change in place, bad input is one clear error line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import ray_deploy

ROW = [[1.0, 2.0]]


def tripled(data: Any) -> Any:
    return np.asarray(data, dtype=float).sum(axis=1) * 3


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cli = str(Path(sys.executable).with_name("ray-deploy"))
    return subprocess.run([cli, *args], capture_output=True, text=True, timeout=300)


def test_cli_scale_changes_replicas_in_place(cleanup: list[str]) -> None:
    cleanup.append("cli-scaled")
    ray_deploy.deploy(tripled, "cli-scaled", sample_input=np.array(ROW), num_cpus=0.1, show_progress=False)
    scaled = _cli("scale", "cli-scaled", "--min", "2", "--max", "2")
    assert scaled.returncode == 0, scaled.stderr[-2000:]
    assert scaled.stdout.strip().splitlines()[-1] == "scaled cli-scaled: min 2, max 2 replicas (version 1)"
    dep = ray_deploy.get("cli-scaled")
    deadline = time.time() + 120
    while dep.status()["replicas"]["current"] != 2:
        assert time.time() < deadline, dep.status()["replicas"]
        time.sleep(0.5)
    doc = dep.status()
    assert doc["version"] == "1" and doc["replicas"]["target"] == 2 and doc["options"]["min_replicas"] == 2
    assert dep.predict(ROW).tolist() == [9.0]


def test_cli_scale_bad_input_is_one_error_line(cluster: ray_deploy.ClusterInfo) -> None:
    nothing = _cli("scale", "anything")
    assert nothing.returncode == 1
    assert nothing.stderr.strip().splitlines()[-1] == (
        "error: scale needs --min and/or --max, e.g. `ray-deploy scale iris --min 2 --max 4`"
    )
    missing = _cli("scale", "no-such-model", "--min", "1", "--max", "1")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("error: no deployment named 'no-such-model'")
    not_int = _cli("scale", "no-such-model", "--min", "one")
    assert not_int.returncode == 2 and "argument --min: invalid int value: 'one'" in not_int.stderr

"""Changing the cluster without becoming a Ray driver: actions run the ``ray-deploy`` CLI as a Ray Job
inside the cluster (submitted through the dashboard REST API), and starting the local cluster runs
``ray-deploy up`` as a subprocess.

An action is a Ray Job whose metadata names the action and the deployment, so the caller keeps no
state: :func:`action_status` reads the job back from the dashboard. The job's CLI gets this process's
settings (:meth:`ray_deploy.config.Settings.to_env`), so it acts on the same store, endpoint and ports.

Example:
    >>> doc = await submit_action(client, "scale", "iris", ["--min", "2", "--max", "2"], python="python")
    >>> (await action_status(client, doc.action_id)).status
    'SUCCEEDED'
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import sys
import uuid
from typing import Any

from ray_deploy import audit
from ray_deploy.config import Settings
from ray_deploy.dashboard import DashboardClient, UpstreamFailed
from ray_deploy.documents import ActionDocument, ActionKind, ActionStatus
from ray_deploy.errors import ModelNotFound

log = logging.getLogger(__name__)

ACTIONS: tuple[ActionKind, ...] = ("scale", "delete", "promote", "rollback")
_ID = re.compile(r"^ray-deploy-(scale|delete|promote|rollback)-[0-9a-f]{12}$")
_STATUS: dict[str, ActionStatus] = {
    "PENDING": "PENDING",
    "RUNNING": "RUNNING",
    "SUCCEEDED": "SUCCEEDED",
    "FAILED": "FAILED",
    "STOPPED": "FAILED",
}
_META_ACTION = "ray_deploy.action"
_META_NAME = "ray_deploy.name"


def entrypoint(python: str, action: str, name: str, args: list[str], env: dict[str, str]) -> str:
    """The shell command a Ray Job runs: ``ENV=... <python> -m ray_deploy.cli <action> <name> <args>``.

    The interpreter is explicit because a job's shell does not get the head's virtual environment on PATH.

    Example:
        >>> entrypoint("/venv/bin/python", "delete", "iris", [], {"RAY_DEPLOY_HTTP_PORT": "8000"})
        'RAY_DEPLOY_HTTP_PORT=8000 /venv/bin/python -m ray_deploy.cli delete iris'
    """
    assignments = [f"{key}={shlex.quote(value)}" for key, value in sorted(env.items())]
    command = [shlex.quote(python), "-m", "ray_deploy.cli", action, shlex.quote(name), *map(shlex.quote, args)]
    return " ".join([*assignments, *command])


async def submit_action(
    client: DashboardClient, action: ActionKind, name: str, args: list[str], python: str, settings: Settings
) -> ActionDocument:
    """Submit ``ray-deploy <action> <name> <args>`` as a Ray Job; returns the action document (PENDING).

    The job's CLI gets this process's settings (``Settings.to_env``), so a redeploy (``scale``) rebuilds the
    app with the store, endpoint and ports the deployer used, and the caller's identity
    (``audit.current_identity()``, e.g. ``jupyter:alice`` set by the server extension's handler), so the audit
    log names who asked, not the job.

    Example:
        >>> (await submit_action(client, "delete", "iris", [], sys.executable, Settings.from_env())).status
        'PENDING'
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {ACTIONS}")
    action_id = f"ray-deploy-{action}-{uuid.uuid4().hex[:12]}"
    env = settings.to_env()
    env.pop("RAY_ADDRESS", None)  # the job runs inside the cluster, where Ray sets it (ours may be a client URL)
    if settings.ray_address is None:
        # the local head: name its GCS. Ray's job manager gives the driver the cluster named in
        # /tmp/ray/ray_current_cluster, the one started last on this machine, which may be another local cluster
        env["RAY_ADDRESS"] = f"127.0.0.1:{settings.ray_port}"
    env[audit.WHO_ENV] = audit.current_identity()
    command = entrypoint(python, action, name, args, env)
    log.info("ray-deploy: submitting %s as Ray Job %s: %s", action, action_id, command)
    await client.submit_job(command, action_id, {_META_ACTION: action, _META_NAME: name})
    return _document(action_id, action, name, "PENDING", f"{action} {name}: submitted as Ray Job {action_id}")


async def action_status(client: DashboardClient, action_id: str) -> ActionDocument:
    """The current action document of a submitted action; a failure carries the CLI's error line.

    Example:
        >>> (await action_status(client, "ray-deploy-scale-0123456789ab")).status
        'RUNNING'
    """
    if not _ID.match(action_id):
        raise ModelNotFound(f"no ray-deploy action {action_id!r}: ids look like 'ray-deploy-scale-0123456789ab'")
    try:
        job = await client.job(action_id)
    except ModelNotFound:
        raise ModelNotFound(
            f"no ray-deploy action {action_id!r} on this cluster (it may have been restarted)"
        ) from None
    metadata = job.get("metadata") or {}
    action, name = metadata.get(_META_ACTION), metadata.get(_META_NAME)
    if action not in ACTIONS or not isinstance(name, str) or not name:
        raise ModelNotFound(f"Ray Job {action_id!r} is not a ray-deploy action")
    status = _STATUS.get(str(job.get("status")), "FAILED")
    if status in ("PENDING", "RUNNING"):
        message = f"{action} {name}: {status.lower()} as Ray Job {action_id}"
    else:
        logs = await client.job_logs(action_id)
        message = _outcome(logs, job, status)
    return _document(action_id, action, name, status, message)


def _outcome(logs: str, job: dict[str, Any], status: str) -> str:
    """The line that says how the CLI ended: its ``error: ...`` line, else its last output line."""
    lines = [line.strip() for line in logs.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if status == "FAILED":
        if errors:  # the CLI's own one-line error
            return errors[-1].removeprefix("error: ")
        raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt): ", line)]
        cause = raised[-1] if raised else (lines[-1] if lines else str(job.get("message") or "no output"))
        return f"the Ray Job failed before ray-deploy could act: {cause} (its full log is in the Ray dashboard)"
    printed = [
        line for line in lines if not re.match(r"^(\d{4}-\d\d-\d\d|INFO|WARNING|DEBUG|Running entrypoint)", line)
    ]
    return printed[-1] if printed else str(job.get("message") or "done")


def _document(action_id: str, action: ActionKind, name: str, status: ActionStatus, message: str) -> ActionDocument:
    return ActionDocument(action_id=action_id, action=action, name=name, status=status, message=message)


async def start_local_cluster(timeout_s: float, python: str = sys.executable) -> str:
    """Run ``ray-deploy up`` in a subprocess (the subprocess may be a driver; this process never is).

    Returns what it printed; raises :class:`ClusterError` with its error line when it fails.

    Example:
        >>> print(await start_local_cluster(600))
        cluster   127.0.0.1:6379 (local), 8 CPU, 0 GPU
    """
    command = [python, "-m", "ray_deploy.cli", "up"]
    log.info("ray-deploy: starting the local cluster: %s", " ".join(command))
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=dict(os.environ),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise UpstreamFailed(
            f"`ray-deploy up` did not finish within {timeout_s:g} s; run it in a terminal to see why"
        ) from None
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if proc.returncode != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        reason = errors[-1] if errors else " | ".join(lines[-5:]) or "no output"
        raise UpstreamFailed(f"`ray-deploy up` failed (exit {proc.returncode}): {reason}")
    return stdout

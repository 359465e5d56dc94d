"""A fake of ``jupyter_ext.manager.DeploymentManager`` for the handler tests: it answers with the side
panel's JSON fixtures (the documents jest uses too), records every call, and raises what it is told to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray_deploy.audit import current_identity
from ray_deploy.documents import (
    ActionDocument,
    AuditTrail,
    ClusterDocument,
    DeploymentDetails,
    DeploymentList,
    StatusDocument,
)

FIXTURES = Path(__file__).resolve().parents[2] / "jupyter_ext" / "frontend" / "test" / "fixtures"


def fixture(name: str) -> Any:
    """One fixture file's JSON."""
    return json.loads((FIXTURES / name).read_text())


class FakeManager:
    """Answers every manager call from fixtures; ``fail`` (an exception) is raised by the next calls instead."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.identities: list[str] = []  # audit.current_identity() during each call (the handler sets it)
        self.fail: BaseException | None = None

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        self.identities.append(current_identity())
        if self.fail is not None:
            raise self.fail

    async def cluster(self) -> ClusterDocument:
        self._call("cluster")
        return ClusterDocument.model_validate(fixture("cluster.json"))

    async def start_cluster(self) -> ClusterDocument:
        self._call("start_cluster")
        return ClusterDocument.model_validate(fixture("cluster.json"))

    async def deployments(self) -> DeploymentList:
        self._call("deployments")
        docs = [fixture("status-deploying.json"), fixture("status.json")]
        return DeploymentList(deployments=[StatusDocument.model_validate(d) for d in docs])

    async def deployment(self, name: str) -> DeploymentDetails:
        self._call("deployment", name)
        return DeploymentDetails.model_validate({**fixture("status.json"), "versions": fixture("versions.json")})

    async def scale(self, name: str, min_replicas: int, max_replicas: int) -> ActionDocument:
        self._call("scale", name, min_replicas, max_replicas)
        return ActionDocument.model_validate(fixture("action.json"))

    async def delete(self, name: str) -> ActionDocument:
        self._call("delete", name)
        return ActionDocument.model_validate({**fixture("action.json"), "action": "delete"})

    async def promote(self, name: str) -> ActionDocument:
        self._call("promote", name)
        return _action("promote", name)

    async def rollback(self, name: str, to_version: str | None) -> ActionDocument:
        self._call("rollback", name, to_version)
        return _action("rollback", name)

    async def audit(self, name: str, since: float | None) -> AuditTrail:
        self._call("audit", name, since)
        return AuditTrail.model_validate({**fixture("audit.json"), "deployment": name})

    async def action(self, action_id: str) -> ActionDocument:
        self._call("action", action_id)
        return ActionDocument.model_validate({**fixture("action.json"), "status": "SUCCEEDED", "message": "done"})


def _action(action: str, name: str) -> ActionDocument:
    """The fixture's submitted action, as ``action`` of ``name``."""
    action_id = f"ray-deploy-{action}-0123456789ab"
    message = f"{action} {name}: submitted as Ray Job {action_id}"
    return ActionDocument.model_validate(
        {**fixture("action.json"), "action_id": action_id, "action": action, "name": name, "message": message}
    )

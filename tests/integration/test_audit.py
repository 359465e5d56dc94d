"""The audit trail and promotion approvals on the real cluster: each change leaves exactly one event with its
before/after, an edited audit file fails verification, and a promotion waits for a second person's approval."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import requests
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import ray_deploy
from jupyter_ext.manager import DeploymentManager
from ray_deploy.audit import acting_as, audit_entries, audit_log, verify_audit
from ray_deploy.config import Settings
from ray_deploy.errors import ConfigError
from ray_deploy.rollout import ApprovalRefused
from tests.integration.api import auth

NAME = "audited"


def _events(since: float) -> list[dict[str, Any]]:
    return [e for e in audit_entries(NAME, since) if e["time"] >= since]


def _one(since: float, action: str) -> dict[str, Any]:
    matching = [e for e in _events(since) if e["action"] == action]
    assert len(matching) == 1, (action, _events(since))
    return matching[0]


def test_changes_are_audited_once_and_approval_needs_a_second_person(cleanup: list[str]) -> None:
    cleanup.append(NAME)
    X, y = load_iris(return_X_y=True)
    first = LogisticRegression(max_iter=200).fit(X, y)
    second = LogisticRegression(max_iter=200, C=0.5).fit(X, y)

    t0 = time.time()
    with acting_as("user:alice"):
        dep = ray_deploy.deploy(
            first, NAME, sample_input=X[:5], num_cpus=0.1, show_progress=False, require_approval=True
        )
    deployed = _one(t0, "deploy")
    assert deployed["who"] == "user:alice" and deployed["before"] == {}
    assert deployed["after"]["version"] == "1" and deployed["after"]["require_approval"] is True

    t1 = time.time()
    dep.scale(max_replicas=2)
    scaled = _one(t1, "scale")
    assert scaled["before"] == {"version": "1", "max_replicas": 1} and scaled["after"]["max_replicas"] == 2
    assert dep.options.require_approval  # the policy survives a scale

    t2 = time.time()
    with acting_as("user:alice"):
        dep.canary(second, steps=(0.1, 1.0), step_s=3600, sample_input=X[:5])
        assert dep.promote() is False  # the policy holds the promotion
        assert dep.status()["rollout"]["state"] == "awaiting_approval"
        assert "other than user:alice" in dep.status()["rollout"]["message"]
        with pytest.raises(ApprovalRefused, match="user:alice cannot approve the promotion of v2"):
            dep.approve("2")
    assert dep.version == "1"
    with acting_as("jupyter:bob"):
        dep.approve("2")
    assert dep.version == "2"
    started = _one(t2, "canary_start")
    assert started["who"] == "user:alice" and started["after"]["challenger"] == "2"
    assert started["after"]["requires_approval"] is True
    approvals = [e for e in _events(t2) if e["action"] == "approve"]
    assert [(e["who"], e["outcome"].split(":")[0]) for e in approvals] == [
        ("user:alice", "failed"),
        ("jupyter:bob", "ok"),
    ]
    promotions = [e for e in _events(t2) if e["action"] == "promote"]
    assert [(e["who"], e["outcome"]) for e in promotions] == [
        ("user:alice", "awaiting_approval"),
        ("controller:rollout", "ok"),
    ]
    assert promotions[1]["after"]["version"] == "2" and promotions[1]["evidence"]["approved_by"] == "jupyter:bob"

    with pytest.raises(ConfigError, match="requires a second person's approval .* cannot be redeployed directly"):
        ray_deploy.deploy(first, NAME, sample_input=X[:5], num_cpus=0.1, show_progress=False)
    assert dep.version == "2" and sorted(dep.versions()["version"]) == ["1", "2"]  # nothing was registered
    t3 = time.time()
    with pytest.raises(ConfigError, match="a rollback goes back to an older version than 2"):
        dep.rollback(to_version="3")
    dep.rollback(to_version="1")
    rolled = _one(t3, "rollback")
    assert (rolled["before"]["version"], rolled["after"]["version"]) == ("2", "1")

    t4 = time.time()
    ray_deploy.delete(NAME)
    cleanup.remove(NAME)
    deleted = _one(t4, "delete")
    assert deleted["before"]["version"] == "1" and deleted["after"] == {"version": None}
    assert len(_events(t4)) == 1  # delete stops the rollout controller and auto-retrain without events of their own

    table = audit_log(NAME, since=t0)
    assert {"time", "who", "action", "before", "after", "outcome", "evidence", "hash"} <= set(table.columns)
    assert verify_audit().ok

    path = Settings.from_env().audit_path
    original = path.read_text()
    lines = original.splitlines()
    index = next(i for i, line in enumerate(lines) if '"action":"scale"' in line.replace(" ", "") and NAME in line)
    lines[index] = lines[index].replace('"max_replicas": 2', '"max_replicas": 20')
    assert lines[index] != original.splitlines()[index]
    path.write_text("\n".join(lines) + "\n")
    try:
        check = verify_audit()
        assert (check.ok, check.broken_at) == (False, index) and "edited" in check.reason
    finally:
        path.write_text(original)
    assert verify_audit().ok

    # the side panel reads it through the endpoint (GET /v2/audit, admin keys only), wherever the head runs
    trail = asyncio.run(DeploymentManager().audit(NAME, since=t0))
    assert [e.action for e in trail.entries] == list(table["action"]) and trail.verification.ok
    audit_url = f"{Settings.from_env().endpoint}/v2/audit"
    assert requests.get(audit_url, params={"since": "soon"}, headers=auth(), timeout=30).status_code == 400
    reader = ray_deploy.create_key("reader", scopes=["read"])
    try:
        refused = requests.get(audit_url, headers={"Authorization": f"Bearer {reader}"}, timeout=30)
        assert refused.status_code == 403 and "lacks the 'admin' scope" in refused.json()["error"]
    finally:
        ray_deploy.revoke_key(reader)

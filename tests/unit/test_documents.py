"""The wire documents: the committed JSON schema is current, and the side panel's TypeScript test fixtures
(JSON files that jest imports) are documents Python could send, no more and no less."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ray_deploy import documents
from ray_deploy.status import Sample, TrafficHistory, TrafficWindow, status_document

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "jupyter_ext" / "frontend" / "test" / "fixtures"
# every fixture file and the document it is (a list: a JSON array of that document)
FIXTURE_DOCUMENTS: dict[str, Any] = {
    "cluster.json": documents.ClusterDocument,
    "cluster-disconnected.json": documents.ClusterDocument,
    "status.json": documents.StatusDocument,
    "status-deploying.json": documents.StatusDocument,
    "status-retrain-running.json": documents.StatusDocument,
    "status-retrain-finished.json": documents.StatusDocument,
    "versions.json": [documents.VersionDocument],
    "action.json": documents.ActionDocument,
    "error.json": documents.ErrorDocument,
    "audit.json": documents.AuditTrail,
}


def _committed_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(documents.SCHEMA_PATH.read_text())
    return schema


def _validator(definition: str, many: bool = False) -> jsonschema.Draft202012Validator:
    """A validator of one document of the committed schema (or of a JSON array of them)."""
    schema = _committed_schema()
    ref = {"$ref": f"#/$defs/{definition}"}
    root = {"$defs": schema["$defs"], **({"type": "array", "items": ref} if many else ref)}
    return jsonschema.Draft202012Validator(root)


def test_the_committed_schema_is_current() -> None:
    assert documents.SCHEMA_PATH.read_text() == documents.schema_text(), (
        "ray_deploy/documents.schema.json is stale: run `python -m ray_deploy.documents` and commit it"
    )
    jsonschema.Draft202012Validator.check_schema(_committed_schema())
    assert set(_committed_schema()["$defs"]) >= {m.__name__ for m in documents.DOCUMENTS}


def test_every_fixture_file_is_checked() -> None:
    assert {p.name for p in FIXTURES.glob("*.json")} == set(FIXTURE_DOCUMENTS)


@pytest.mark.parametrize("file", sorted(FIXTURE_DOCUMENTS))
def test_typescript_fixtures_are_documents_python_sends(file: str) -> None:
    data = json.loads((FIXTURES / file).read_text())
    model = FIXTURE_DOCUMENTS[file]
    many = isinstance(model, list)
    cls = model[0] if many else model
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(cls.__name__, many).iter_errors(data)
    ]
    assert not errors, f"{file} does not match the committed schema of {cls.__name__}: {errors}"
    # and the pydantic model reads it back unchanged (every field, nothing else)
    for item in data if many else [data]:
        assert cls.model_validate(item).model_dump(mode="json") == item


def test_the_schema_refuses_fields_python_does_not_send() -> None:
    status = json.loads((FIXTURES / "status.json").read_text())
    validator = _validator("StatusDocument")
    unknown = {**status, "drift_score": 0.3}
    assert [e.message for e in validator.iter_errors(unknown)] == [
        "Additional properties are not allowed ('drift_score' was unexpected)"
    ]
    misshapen = {**status, "drift": {"status": "drift", "score": 0.3}}
    assert not validator.is_valid(misshapen)
    without_history = {k: v for k, v in status.items() if k != "history"}
    assert [e.message for e in validator.iter_errors(without_history)] == ["'history' is a required property"]
    action = {**json.loads((FIXTURES / "action.json").read_text()), "action": "retrain"}
    assert not _validator("ActionDocument").is_valid(action)


def test_what_the_cluster_builds_matches_the_schema() -> None:
    app = {
        "route_prefix": "/v2/models/iris",
        "status": "RUNNING",
        "last_deployed_time_s": 5.0,
        "deployments": {
            "ModelServer": {
                "target_num_replicas": 1,
                "deployment_config": {
                    "num_replicas": 1,
                    "user_config": {"version": "2", "kind": "sklearn", "options": {"num_cpus": 0.5}},
                },
                "replicas": [{"state": "RUNNING"}],
            }
        },
    }
    window, history = TrafficWindow(), TrafficHistory(resolution_s=10, span_s=60)
    samples = [Sample(t=100.0 + i, latency_ms=2.0 + i, status=200 if i else 500, rows=1) for i in range(20)]
    window.add(samples)
    history.add(samples)
    traffic = {**window.summary(now=125.0), "dropped_samples": 3}
    doc = status_document("iris", app, traffic, "http://127.0.0.1:8000", 125.0, aliases={"champion": "2"})
    doc["history"] = history.points(now=125.0)  # as the Monitor does
    assert _validator("StatusDocument").is_valid(doc), list(_validator("StatusDocument").iter_errors(doc))
    assert documents.StatusDocument.model_validate(doc).model_dump(mode="json") == doc
    assert [p["errors"] for p in doc["history"]] == [1, 0]

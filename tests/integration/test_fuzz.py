"""A schema-driven fuzzer (schemathesis) against a live deployment and the server app, driven by their own
``openapi.json``: zero 5xx answers, and every answer is documented (status code, content type, JSON error body,
response schema). Positive cases (bodies the document allows) and negative ones (bodies it forbids) both run.
Bounded in examples, with no per-example deadline (shared 2-core machines). Auth is on: every case carries the
project's API key, as a user's client would, except the negative cases that are about the key itself (schemathesis
drops the ``Authorization`` header the bearer scheme requires, or garbles it): those go out as generated.

One check is relaxed on the V2 ``infer`` routes and ``/feedback`` only: OpenAPI cannot tie a tensor's ``shape`` to
the length of its ``data``, nor the length of ``labels`` to that of ``request_ids``, so a schema-valid body there
can still be a documented 4xx (``shape [2] needs 2 values, got 0``); on ``/predict``, whose bodies the document
describes exactly, schema-valid bodies must be accepted."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sklearn.pipeline import Pipeline

import ray_deploy
from tests.integration.api import auth

MAX_EXAMPLES = 60
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


def _fuzz(openapi_url: str, base_url: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(openapi_url, headers=auth())  # the document needs a key too

    @given(case=schema.as_strategy(mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def call(case: Any) -> None:
        relaxed = [positive_data_acceptance] if case.operation.path.endswith(("/infer", "/feedback")) else []
        headers = {} if _probes_the_key(case) else auth()
        case.call_and_validate(base_url=base_url, headers=headers, timeout=60, excluded_checks=relaxed)

    call()


def _probes_the_key(case: Any) -> bool:
    """Whether this negative case mutated the Authorization header (removed it or made up a value)."""
    mutations = getattr(getattr(case.meta, "phase", None), "data", None)
    for mutation in getattr(mutations, "mutations", ()):
        about = f"{mutation.parameter} {mutation.original_value} {mutation.path}".lower()
        if mutation.parameter_location.value == "header" and "authorization" in about:
            return True
    return False


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_deployment_answers_as_documented(churn: tuple[ray_deploy.Deployment, Pipeline], mode: GenerationMode) -> None:
    dep, _ = churn
    _fuzz(f"{dep.url}/openapi.json", dep.url, mode)


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_server_answers_as_documented(
    cluster: ray_deploy.ClusterInfo, churn: tuple[ray_deploy.Deployment, Pipeline], mode: GenerationMode
) -> None:
    _fuzz(f"{cluster.endpoint}/v2/openapi.json", f"{cluster.endpoint}/v2", mode)

"""The V2 gRPC endpoint with a standard client: tritonclient.grpc with its defaults (the model named only in
``model_name``, the API key as ``authorization`` metadata) against the shared churn pipeline (FP64 and BYTES
columns) and an FP32 tensor model; answers equal the HTTP API's for the same rows, and errors are gRPC statuses."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from tritonclient.utils import InferenceServerException

import ray_deploy
from ray_deploy.config import Settings
from tests.integration.api import auth
from tests.polling import wait_for

FRAME = pd.DataFrame({"age": [25.0, 60.0, 41.0], "income": [20.5, 99.0, 55.0], "plan": ["basic", "team", "pro"]})
COLUMNS = (("age", "FP64"), ("income", "FP64"), ("plan", "BYTES"))


def _key() -> dict[str, str]:
    """The project key as gRPC metadata (gRPC metadata keys are lower case)."""
    return {k.lower(): v for k, v in auth().items()}


@pytest.fixture(scope="module")
def client(cluster: ray_deploy.ClusterInfo) -> triton_grpc.InferenceServerClient:
    """A tritonclient.grpc client with default settings, once the ServerInfo replica listens."""
    grpc_client = triton_grpc.InferenceServerClient(Settings.from_env().grpc_target)

    def live() -> bool:
        try:
            return bool(grpc_client.is_server_live())
        except InferenceServerException:
            return False

    wait_for(live, 60, "the V2 gRPC endpoint")
    return grpc_client


@pytest.fixture(scope="module")
def fp32(cluster: ray_deploy.ClusterInfo) -> Iterator[tuple[ray_deploy.Deployment, LogisticRegression]]:
    """A classifier over a float32 tensor: its V2 input is FP32."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    model = LogisticRegression().fit(X, (X[:, 0] + X[:, 1] > 0).astype(int))
    dep = ray_deploy.deploy(model, "grpc-fp32", sample_input=X[:5], num_cpus=0.1, show_progress=False)
    yield dep, model
    dep.delete()


def _churn_inputs(module: type) -> list[object]:
    inputs = []
    for column, datatype in COLUMNS:
        values = FRAME[column].to_numpy()
        tensor = module.InferInput(column, [len(FRAME)], datatype)  # type: ignore[attr-defined]
        tensor.set_data_from_numpy(values.astype(object) if datatype == "BYTES" else values)
        inputs.append(tensor)
    return inputs


def test_health_and_metadata(
    client: triton_grpc.InferenceServerClient, churn: tuple[ray_deploy.Deployment, Pipeline]
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("churn", headers=_key())
    server = client.get_server_metadata(headers=_key())
    assert server.name == "ray-deploy" and "binary_tensor_data" in server.extensions
    meta = client.get_model_metadata("churn", headers=_key())
    assert meta.name == "churn" and meta.platform.startswith("ray-deploy/")
    assert [(i.name, i.datatype) for i in meta.inputs] == list(COLUMNS)
    assert meta.outputs[0].datatype == "FP64" and list(meta.outputs[0].shape) == [-1, 2]
    version = meta.versions[-1]
    assert client.is_model_ready("churn", model_version=version, headers=_key())


def test_dataframe_model_with_bytes_columns_equals_the_http_answer(
    client: triton_grpc.InferenceServerClient,
    churn: tuple[ray_deploy.Deployment, Pipeline],
    cluster: ray_deploy.ClusterInfo,
) -> None:
    _, model = churn
    result = client.infer("churn", _churn_inputs(triton_grpc), request_id="grpc-1", headers=_key())
    proba = result.as_numpy("predictions")
    np.testing.assert_allclose(proba, model.predict_proba(FRAME), rtol=1e-6)
    response = result.get_response()
    assert response.model_name == "churn" and response.id == "grpc-1" and response.model_version
    http = triton_http.InferenceServerClient(url=cluster.endpoint.removeprefix("http://"))
    over_http = http.infer("churn", _churn_inputs(triton_http), headers=auth())
    np.testing.assert_array_equal(proba, over_http.as_numpy("predictions"))


def test_fp32_tensor_model_with_binary_defaults(
    client: triton_grpc.InferenceServerClient, fp32: tuple[ray_deploy.Deployment, LogisticRegression]
) -> None:
    dep, _ = fp32
    _infer_equals_local(client, fp32, np.random.default_rng(5).normal(size=(7, 4)).astype(np.float32))
    meta = client.get_model_metadata(dep.name, headers=_key())
    assert [(i.datatype, list(i.shape)) for i in meta.inputs] == [("FP32", [-1, 4])]


def _refused(call: object) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as refused:
        call()  # type: ignore[operator]
    return refused.value


def test_errors_are_grpc_statuses(
    client: triton_grpc.InferenceServerClient, churn: tuple[ray_deploy.Deployment, Pipeline]
) -> None:
    wrong = _refused(lambda: client.infer("churn", _churn_inputs(triton_grpc), headers={"authorization": "Bearer no"}))
    assert wrong.status() == "StatusCode.UNAUTHENTICATED"
    missing = _refused(lambda: client.infer("churn", _churn_inputs(triton_grpc)))
    assert missing.status() == "StatusCode.UNAUTHENTICATED" and "needs an API key" in missing.message()
    unknown = _refused(lambda: client.get_model_metadata("no-such-model", headers=_key()))
    assert unknown.status() == "StatusCode.NOT_FOUND"
    assert "no deployment named 'no-such-model'; deployed: [" in unknown.message() and "'churn'" in unknown.message()
    age = triton_grpc.InferInput("age", [2, 2], "FP64")
    age.set_data_from_numpy(np.ones((2, 2)))
    mismatch = _refused(lambda: client.infer("churn", [age], headers=_key()))
    assert mismatch.status() == "StatusCode.INVALID_ARGUMENT" and mismatch.message()


def test_a_tensor_of_several_megabytes_crosses_to_the_model(
    client: triton_grpc.InferenceServerClient, fp32: tuple[ray_deploy.Deployment, LogisticRegression]
) -> None:
    """6.4 MB in, 3.2 MB out, past gRPC's 4 MB default message size: the front end's hop to the model (through
    HAProxy) and the capture shipped to the Monitor carry it whole."""
    _infer_equals_local(client, fp32, np.random.default_rng(6).normal(size=(400_000, 4)).astype(np.float32))


def _infer_equals_local(
    client: triton_grpc.InferenceServerClient, fp32: tuple[ray_deploy.Deployment, LogisticRegression], data: np.ndarray
) -> None:
    """``ModelInfer`` of ``data`` as one FP32 tensor answers what the model predicts in this process."""
    dep, model = fp32
    tensor = triton_grpc.InferInput("input-0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer(dep.name, [tensor], headers=_key())
    np.testing.assert_array_equal(result.as_numpy("predictions"), model.predict(data))


def test_calls_under_load_survive_a_new_version_and_scaling(
    client: triton_grpc.InferenceServerClient, fp32: tuple[ray_deploy.Deployment, LogisticRegression]
) -> None:
    """Calls go through HAProxy, which reloads whenever replicas come and go: a new version, a scale out and a scale
    back in under steady calls from two clients fail none of them and change no answer."""
    dep, model = fp32
    rows = np.random.default_rng(7).normal(size=(3, 4)).astype(np.float32)
    expected = model.predict(rows)
    outcomes: list[str] = []
    done = threading.Event()

    def call_in_a_loop() -> None:
        own = triton_grpc.InferenceServerClient(Settings.from_env().grpc_target)
        tensor = triton_grpc.InferInput("input-0", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        while not done.is_set():
            try:
                got = own.infer(dep.name, [tensor], headers=_key()).as_numpy("predictions")
                outcomes.append("ok" if np.array_equal(got, expected) else f"another answer: {got}")
            except InferenceServerException as exc:
                outcomes.append(f"{exc.status()}: {exc.message()}")

    callers = [threading.Thread(target=call_in_a_loop, daemon=True) for _ in range(2)]
    for caller in callers:
        caller.start()
    try:
        wait_for(lambda: len(outcomes) >= 20, 30, "the first calls")
        again = ray_deploy.deploy(model, dep.name, sample_input=rows, num_cpus=0.1, show_progress=False)
        again.scale(min_replicas=2, max_replicas=2)
        again.scale(min_replicas=1, max_replicas=1)
        answered = len(outcomes)
        wait_for(lambda: len(outcomes) >= answered + 20, 30, "calls after scaling back in")
    finally:
        done.set()
        for caller in callers:
            caller.join(timeout=30)
    failures = [outcome for outcome in outcomes if outcome != "ok"]
    assert not failures, f"{len(failures)} of {len(outcomes)} calls failed, e.g. {failures[:3]}"

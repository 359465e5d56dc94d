"""Wrapping every accepted model kind into MLflow and loading it back as a replica would."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression

from ray_deploy.dataplane.schema import InputSchema
from ray_deploy.dataplane.served_model import load_for_serving
from ray_deploy.errors import ConfigError
from ray_deploy.package import check_predict_method, model_kind
from ray_deploy.registry import model_uri, register, versions
from tests.unit.models import Doubler, TinyNet, add_one, iris, sklearn_model


def test_model_kinds() -> None:
    assert model_kind(sklearn_model()) == "sklearn"
    assert model_kind(TinyNet()) == "torch"
    assert model_kind(Doubler()) == "pyfunc"
    assert model_kind(add_one) == "callable"
    assert model_kind("runs:/abc/model") == "uri"
    assert model_kind("models:/iris@champion") == "uri"


def test_unsupported_objects_say_what_works() -> None:
    with pytest.raises(ConfigError, match="pass a scikit-learn estimator, a torch.nn.Module"):
        model_kind(42)
    with pytest.raises(ConfigError, match="is not an MLflow model URI"):
        model_kind("s3://bucket/model.pkl")


def test_sklearn_round_trip_with_signature_and_tags(mlflow_store: str) -> None:
    X, _ = iris()
    model = sklearn_model()
    version = register(model, "sklearn", "iris", sample_input=X[:5])
    served = load_for_serving(model_uri("iris", version))
    assert served.flavor == "pyfunc"
    assert served.predict(X[:3]).tolist() == model.predict(X[:3]).tolist()
    schema = InputSchema.from_signature(served.signature)
    assert schema is not None and schema.names == list(X.columns)

    from mlflow import MlflowClient

    tags = MlflowClient().get_model_version("iris", version).tags
    assert tags["ray_deploy.model_kind"] == "sklearn"
    assert "ray_deploy.version.scikit-learn" in tags and "ray_deploy.deployed_at" in tags


def test_sklearn_without_sample_uses_feature_names(mlflow_store: str) -> None:
    version = register(sklearn_model(), "sklearn", "iris-nosample")
    schema = InputSchema.from_signature(load_for_serving(model_uri("iris-nosample", version)).signature)
    assert schema is not None and len(schema.names) == 4


def test_torch_round_trip_runs_in_inference_mode(mlflow_store: str) -> None:
    net = TinyNet()
    sample = torch.randn(4, 4)
    version = register(net, "torch", "net", sample_input=sample)
    served = load_for_serving(model_uri("net", version))
    assert served.flavor == "torch" and served.device == "cpu"
    out = served.predict(sample.numpy().astype(np.float64))
    with torch.no_grad():
        expected = net(sample).numpy()
    assert np.allclose(out, expected, atol=1e-6)
    schema = InputSchema.from_signature(served.signature)
    assert schema is not None and schema.tensor_shape == (-1, 4)


def test_torch_without_sample_infers_input_width(mlflow_store: str) -> None:
    version = register(TinyNet(), "torch", "net-nosample")
    schema = InputSchema.from_signature(load_for_serving(model_uri("net-nosample", version)).signature)
    assert schema is not None and schema.tensor_shape == (-1, 4)


def test_pyfunc_and_callable_round_trip(mlflow_store: str) -> None:
    data = np.array([[1.0, 2.0]])
    v1 = register(Doubler(), "pyfunc", "doubler", sample_input=data)
    v2 = register(add_one, "callable", "adder", sample_input=data)
    assert np.asarray(load_for_serving(model_uri("doubler", v1)).predict(data)).tolist() == [[2.0, 4.0]]
    assert np.asarray(load_for_serving(model_uri("adder", v2)).predict(data)).tolist() == [[2.0, 3.0]]


def test_uri_registers_a_new_version_of_the_deployment(mlflow_store: str) -> None:
    first = register(sklearn_model(), "sklearn", "source")
    version = register(f"models:/source/{first}", "uri", "copy")
    assert versions("copy") == [version]
    X, _ = iris()
    assert len(load_for_serving(model_uri("copy", version)).predict(X[:2])) == 2


def test_unknown_uri_is_a_config_error(mlflow_store: str) -> None:
    with pytest.raises(ConfigError, match="cannot read the MLflow model 'models:/nothing/1'"):
        register("models:/nothing/1", "uri", "copy")


def test_predict_proba_shapes_the_registered_model_and_its_outputs(mlflow_store: str) -> None:
    from ray_deploy.dataplane.served_model import Loaded

    X, _ = iris()
    model = sklearn_model()
    version = register(model, "sklearn", "iris-proba", sample_input=X[:5], predict_method="predict_proba")
    loaded = Loaded(version, load_for_serving(model_uri("iris-proba", version)))
    np.testing.assert_allclose(loaded.model.predict(X[:3]), model.predict_proba(X[:3]))
    assert loaded.outputs == [{"name": "predictions", "datatype": "FP64", "shape": [-1, 3]}]

    net = torch.nn.Linear(4, 3)  # raw logits; predict_proba adds the softmax
    version = register(net, "torch", "net-proba", sample_input=torch.randn(2, 4), predict_method="predict_proba")
    probabilities = load_for_serving(model_uri("net-proba", version), kind="torch").predict(np.ones((2, 4)))
    np.testing.assert_allclose(probabilities.sum(axis=1), [1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize(
    ("model", "kind", "fragment"),
    [
        (add_one, "callable", "applies to scikit-learn and torch models"),
        (LinearRegression(), "sklearn", "needs a classifier"),
    ],
)
def test_predict_proba_where_it_cannot_apply_says_why(model: object, kind: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        check_predict_method(model, kind, "predict_proba")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="is not one of"):
        check_predict_method(model, kind, "proba")  # type: ignore[arg-type]

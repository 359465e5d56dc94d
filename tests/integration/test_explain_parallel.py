"""explain_parallel on a real local Ray: chunks explained as Ray tasks give explain_model's values, in order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import ray_deploy
from ray_deploy.errors import ConfigError
from ray_deploy.explain import explain_model, explain_parallel
from tests.integration.churn import churn_data, churn_pipeline


def test_parallel_equals_single_process(cluster: ray_deploy.ClusterInfo) -> None:
    model = churn_pipeline()
    frame, _ = churn_data()
    rows = frame[:40]
    args = {"predict_method": "predict_proba", "background": frame[:20]}
    single = explain_model(model, "sklearn", rows, **args)
    parallel = explain_parallel(model, "sklearn", rows, chunks=2, num_cpus=0.5, **args)
    assert parallel.explainer == single.explainer and parallel.feature_names == ["age", "income", "plan"]
    np.testing.assert_allclose(parallel.values, single.values, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(parallel.base_values, single.base_values, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(parallel.predictions, single.predictions, rtol=1e-9)
    pd.testing.assert_frame_equal(parallel.data, single.data)
    with pytest.raises(ConfigError, match="chunks"):
        explain_parallel(model, "sklearn", rows, chunks=0)

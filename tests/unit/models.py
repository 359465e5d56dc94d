"""Small models of every accepted kind, shared by the unit tests."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def iris() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


def sklearn_model() -> LogisticRegression:
    X, y = iris()
    return LogisticRegression(max_iter=500).fit(X, y)


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.layer(x), dim=-1)


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return np.asarray(model_input) * 2


def add_one(data: Any) -> Any:
    return np.asarray(data) + 1

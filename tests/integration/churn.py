"""A small churn model: a scikit-learn pipeline over two float columns and a categorical one, with an imputer,
so it takes what JSON clients send (integers, nulls, unseen categories). Data is generated, never downloaded."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

COLUMNS = ["age", "income", "plan"]


def churn_data(rows: int = 200) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, rows).round(),
            "income": rng.uniform(10, 150, rows).round(1),
            "plan": rng.choice(["basic", "pro", "team"], rows),
        }
    )
    churned = ((frame["age"] < 35) & (frame["plan"] == "basic")) | (frame["income"] < 30)
    return frame, churned.to_numpy().astype(int)


def churn_pipeline() -> Pipeline:
    frame, labels = churn_data()
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    features = ColumnTransformer(
        [("num", numeric, ["age", "income"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"])]
    )
    return Pipeline([("features", features), ("clf", LogisticRegression(max_iter=500))]).fit(frame, labels)

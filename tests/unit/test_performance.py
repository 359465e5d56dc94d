"""Model metrics from delayed labels: the task guess, hand-checked metric values and the bounded label join."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ray_deploy.capture_store import capture_batch, capture_frame
from ray_deploy.documents import PerformanceSection
from ray_deploy.errors import BadRequest
from ray_deploy.performance import LabelJoin, expand_labels, model_metrics, task_of, validate_feedback

T0 = 1_700_000_000.0


def _frame(rid: str, predictions: list[Any], version: str = "1", t: float = T0) -> pd.DataFrame:
    rows = len(predictions)
    return capture_frame(rid, t, version, 1.0, 200, pd.DataFrame({"x": np.arange(rows, dtype=float)}), predictions)


@pytest.mark.parametrize(
    ("predictions", "task"),
    [
        ([0.2, 3.5], "regression"),
        (np.array([1.0, 2.0], dtype=np.float32), "regression"),
        ([0, 1, 1], "classification"),
        ([True, False], "classification"),
        (["cat", "dog"], "classification"),
        (pd.Series(["a", None]), "classification"),
        (np.array([[0.1, 0.9], [0.5, 0.5]]), "classification"),
        (pd.Series([[0.1, 0.9], [0.6, 0.4]]), "classification"),
        (np.array([[1.5], [2.5]]), "regression"),
    ],
)
def test_task_of(predictions: object, task: str) -> None:
    assert task_of(predictions) == task


def test_binary_metrics_match_hand_computed_values() -> None:
    y_true = [0, 1, 1, 0, 1]
    y_pred = [0, 1, 0, 0, 1]
    scores = [0.1, 0.9, 0.4, 0.5, 0.8]
    got = model_metrics("classification", y_true, y_pred, scores=scores)
    # TP=2 FP=0 FN=1; AUC: 5 of the 6 positive/negative pairs are ordered right (0.4 < 0.5 is not)
    assert got == pytest.approx({"accuracy": 0.8, "precision": 1.0, "recall": 2 / 3, "f1": 0.8, "auc": 5 / 6})
    strings = model_metrics("classification", ["no", "yes", "yes"], ["yes", "yes", "yes"])
    assert strings == pytest.approx({"accuracy": 2 / 3, "precision": 2 / 3, "recall": 1.0, "f1": 0.8, "auc": None})


def test_multiclass_metrics_from_probability_rows_match_hand_computed_values() -> None:
    probabilities = [[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]
    got = model_metrics("classification", [0, 1, 2, 2], probabilities)  # argmax: 0, 1, 1, 2
    # precision per class 1, 1/2, 1; recall 1, 1, 1/2; f1 1, 2/3, 2/3; AUC per class 1, 2.5/3, 3/4
    assert got == pytest.approx(
        {"accuracy": 0.75, "precision": 2.5 / 3, "recall": 2.5 / 3, "f1": 7 / 9, "auc": (1 + 2.5 / 3 + 0.75) / 3}
    )


def test_regression_metrics_match_hand_computed_values() -> None:
    got = model_metrics("regression", [1.0, 2.0, 3.0], [1.5, 2.0, 2.0])
    assert got == pytest.approx({"mae": 0.5, "rmse": math.sqrt(1.25 / 3), "r2": 1 - 1.25 / 2})
    assert model_metrics("regression", [1.0], [2.0]) == {"mae": 1.0, "rmse": 1.0, "r2": None}
    assert model_metrics("regression", [], []) == {"mae": None, "rmse": None, "r2": None}


def test_metrics_that_cannot_be_computed_are_none() -> None:
    one_class = model_metrics("classification", [1, 1], [1, 0], scores=[0.9, 0.2])
    assert one_class["auc"] is None and one_class["accuracy"] == 0.5
    all_negative = model_metrics("classification", [0, 0], [0, 0])
    assert all_negative["precision"] is None and all_negative["accuracy"] == 1.0
    with pytest.raises(ValueError, match="class indexes"):
        model_metrics("classification", [0.5], [[0.2, 0.8]])


def test_label_join_memory_stays_bounded_over_a_million_predictions() -> None:
    join = LabelJoin(max_predictions=50_000)
    batch = 10_000
    for b in range(100):
        frame = pd.DataFrame(
            {
                "request_id": [f"r{i}" for i in range(b * batch, (b + 1) * batch)],
                "row": 0,
                "t": T0 + b,
                "version": "1",
                "prediction": np.arange(batch) % 2,
            }
        )
        join.add_predictions(frame)
        assert len(join) <= 50_000
    assert len(join) == 50_000
    assert join.missing(["r0", "r999999"]) == ["r0"]  # the oldest went first, the newest stayed


def test_labelled_pairs_stay_bounded_too() -> None:
    join = LabelJoin(max_labelled=100)
    join.add_predictions(capture_batch((f"r{i}", T0, "1", 1.0, 200, pd.DataFrame({"x": [0]}), [1]) for i in range(300)))
    join.add_labels([f"r{i}" for i in range(300)], [1] * 300, now=T0 + 1)
    assert join.labelled == 100
    assert join.section(T0 + 1, "1")["labelled"] == 100


def test_multi_row_labels_join_row_by_row() -> None:
    join = LabelJoin()
    join.add_predictions(_frame("a", [0, 1, 1]))
    join.add_predictions(_frame("b", [1]))
    assert join.add_labels(["a", "b"], [[0, 1, 0], 1], now=T0 + 10) == (2, [])
    section = join.section(T0 + 10, "1")
    assert section["labelled"] == 4
    assert section["metrics"]["accuracy"] == 0.75
    assert section["task"] == "classification"


def test_wrong_label_count_names_the_request_and_keeps_nothing() -> None:
    join = LabelJoin()
    join.add_predictions(
        capture_batch([("ok", T0, "1", 1, 200, {"x": [1]}, [1]), ("multi", T0, "1", 1, 200, {"x": [1, 2]}, [0, 1])])
    )
    with pytest.raises(BadRequest, match=r"request 'multi' has 2 rows but 1 label\(s\).*a list of 2 labels") as info:
        join.add_labels(["ok", "multi"], [1, 0], now=T0)
    assert info.value.http_status == 400
    with pytest.raises(BadRequest, match="request 'ok' has 1 rows but 3 label"):
        join.add_labels(["ok"], [[1, 0, 1]], now=T0)
    assert join.labelled == 0 and join.labels_seen == 0


def test_unknown_ids_are_reported_and_counted_and_store_rows_join() -> None:
    join = LabelJoin()
    join.add_predictions(_frame("known", [1]))
    from_store = _frame("old", [[0.3, 0.7], [0.9, 0.1]], version="0", t=T0 - 86_400)
    joined, unknown = join.add_labels(
        ["known", "ghost", "old", "ghost"], [1, 0, [1, 1], 1], now=T0, captured=from_store
    )
    assert (joined, unknown) == (2, ["ghost"])
    joined, unknown = join.add_labels(["ghost2"], [0], now=T0)
    assert (joined, unknown) == (0, ["ghost2"])
    section = join.section(T0, "1")
    assert section["unknown_ids"] == 2
    assert section["by_version"]["0"]["accuracy"] == 0.5  # argmax 1, 0 against class indexes 1, 1


def test_section_validates_and_covers_the_window_per_version() -> None:
    join = LabelJoin(window_s=600)
    join.add_predictions(
        capture_batch([("a", T0, "1", 1, 200, {"x": [1]}, [2.0]), ("b", T0, "2", 1, 200, {"x": [1]}, [3.0])])
    )
    join.add_predictions(capture_batch([("c", T0, "2", 1, 200, {"x": [1]}, [5.0])]))
    join.add_labels(["a"], [1.0], now=T0)
    join.add_labels(["b", "c"], [2.0, 5.0], now=T0 + 500)
    section = PerformanceSection.model_validate(join.section(T0 + 700, serving_version="2")).model_dump()
    assert section["task"] == "regression"
    assert section["labelled"] == 2  # version 1's label is older than the window
    assert set(section["by_version"]) == {"2"}
    assert section["metrics"] == pytest.approx({"mae": 0.5, "rmse": math.sqrt(0.5), "r2": 1 - 1 / 4.5})
    empty = LabelJoin().section(T0, "1")
    PerformanceSection.model_validate(empty)
    assert empty["task"] is None and empty["metrics"] == {} and empty["labelled"] == 0


def test_a_shadow_version_of_the_same_request_is_judged_too() -> None:
    join = LabelJoin()
    join.add_predictions(_frame("r1", ["cat"], version="1"))
    join.add_predictions(_frame("r1", ["dog"], version="2-shadow"))
    join.add_labels(["r1"], ["dog"], now=T0)
    section = join.section(T0, "1")
    assert section["metrics"]["accuracy"] == 0.0
    assert section["by_version"]["2-shadow"]["accuracy"] == 1.0
    assert join.forget(["r1"]) == 4 and join.labelled == 0


def test_outcomes_since_leave_out_labels_that_arrived_before_an_ab_test_began() -> None:
    join = LabelJoin()
    for rid, prediction in [("early", 1), ("during-right", 1), ("during-wrong", 0)]:
        join.add_predictions(_frame(rid, [prediction]))
    join.add_labels(["early"], [1], now=T0)
    join.add_labels(["during-right", "during-wrong"], [1, 1], now=T0 + 10)
    assert join.outcomes("1", now=T0 + 20) == [1.0, 1.0, 0.0]
    assert join.outcomes("1", now=T0 + 20, since=T0 + 5) == [1.0, 0.0]


def test_relabelling_replaces_the_earlier_label() -> None:
    join = LabelJoin()
    join.add_predictions(_frame("r1", [1]))
    join.add_labels(["r1"], [0], now=T0)
    join.add_labels(["r1"], [1], now=T0 + 1)
    assert join.section(T0 + 1, "1")["metrics"]["accuracy"] == 1.0
    assert join.labelled == 1


def test_labels_must_fit_the_predictions() -> None:
    join = LabelJoin()
    join.add_predictions(_frame("p", [[0.2, 0.8]]))
    join.add_predictions(_frame("s", ["cat"]))
    join.add_predictions(_frame("n", [1.5]))
    with pytest.raises(BadRequest, match=r"'p' row 0 .*probabilities over 2 classes, so send the class index 0..1"):
        join.add_labels(["p"], [2], now=T0)
    with pytest.raises(BadRequest, match="'s' row 0 .*must be a string"):
        join.add_labels(["s"], [1], now=T0)
    with pytest.raises(BadRequest, match="'n' row 0 .*must be a number"):
        join.add_labels(["n"], ["high"], now=T0)


def test_add_rows_takes_labels_already_joined_by_the_store() -> None:
    join = LabelJoin()
    frame = pd.concat([_frame("a", [1]), _frame("b", [0]), _frame("c", [1])], ignore_index=True)
    frame["label"] = [1.0, 1.0, np.nan]  # labels read back from Parquet come as floats, unlabelled as NaN
    assert join.add_rows(frame, now=T0) == 2
    assert join.section(T0, "1")["metrics"]["accuracy"] == 0.5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"request_ids": ["a"]}, r"lacks \['labels'\]"),
        ({"request_ids": ["a", "b"], "labels": [1]}, "2 request ids and 1 labels"),
        ({"request_ids": [""], "labels": [1]}, r"request_ids\[0\] is ''"),
        ({"request_ids": [7], "labels": [1]}, r"request_ids\[0\] is 7"),
        ({"request_ids": ["a"], "labels": [None]}, "label of request 'a' is null"),
        ({"request_ids": ["a"], "labels": [{"y": 1}]}, "label of request 'a' is dict"),
        ({"request_ids": ["a"], "labels": [[]]}, "empty list"),
        ({"request_ids": "a", "labels": 1}, "must be lists"),
        ({"request_ids": [], "labels": []}, "request_ids is empty"),
    ],
)
def test_feedback_errors_say_what_is_wrong_and_what_to_send(body: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        validate_feedback(body)
    assert '{"request_ids": [' in info.value.message


def test_expand_labels_gives_one_label_per_row() -> None:
    assert validate_feedback({"request_ids": ["a", "b"], "labels": [1, [0, 1]]}) == (["a", "b"], [1, [0, 1]])
    assert expand_labels(["a", "b"], [1, [0, 1]]) == (["a", "b", "b"], [0, 0, 1], [1, 0, 1])

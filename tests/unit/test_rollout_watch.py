"""What the Monitor measures for a rollout: per-version windows, shadow pairs and A/B outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ray_deploy.dataplane.rollout_watch import RolloutWatch, fairness_by_version, scalar_predictions
from ray_deploy.rollout import shadow_report
from ray_deploy.status import Sample


def test_windows_count_per_version_and_reset_at_a_new_step() -> None:
    watch = RolloutWatch()
    watch.observe(
        [
            Sample(1.0, 5.0, 200, 1, "a", "1", outputs=np.array([0])),
            Sample(1.0, 7.0, 500, 0, "b", "2"),
            Sample(1.0, 9.0, 200, 1, "c", "2", outputs=np.array([1])),
        ]
    )
    windows = watch.take(reset=True)["windows"]
    assert (windows["1"].requests, windows["2"].requests, windows["2"].errors) == (1, 2, 1)
    assert windows["2"].predictions == [1]
    assert watch.take(reset=False)["windows"] == {}
    assert watch.outcomes_of("error_rate", "2") == [1.0, 0.0]
    assert watch.outcomes_of("latency_ms", "2") == [9.0]


def test_shadow_answers_pair_with_the_champions_answer_to_the_same_request() -> None:
    watch = RolloutWatch()
    champion = [Sample(1.0, 5.0, 200, 1, f"r{i}", "1", outputs=np.array([i % 2])) for i in range(10)]
    shadow = [Sample(1.0, 6.0, 200, 1, f"r{i}", "2", outputs=np.array([1]), shadow=True) for i in range(10)]
    watch.observe(champion + shadow)
    taken = watch.take(reset=False)
    report = shadow_report(
        taken["champion_outputs"], taken["challenger_outputs"], taken["windows"]["1"], taken["windows"]["2"]
    )
    assert report["pairs"] == 10 and report["agreement"] == 0.5


def test_probability_rows_become_class_indexes() -> None:
    assert scalar_predictions(np.array([[0.2, 0.8], [0.9, 0.1]])) == [1, 0]
    assert scalar_predictions(np.array([0.5, 1.5])) == [0.5, 1.5]
    assert scalar_predictions(None) == []


def labelled_rows() -> pd.DataFrame:
    """Version 1 treats both groups alike; version 2 favours group M; the unlabelled row is left out."""
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(9)],
            "version": ["1"] * 4 + ["2"] * 5,
            "sex": ["F", "F", "M", "M", "F", "F", "M", "M", "M"],
            "age": [30] * 9,
            "prediction": [1, 0, 1, 0, [0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.9, 0.1]],
            "label": [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, None],
        }
    )


def test_fairness_per_version_of_the_labelled_rows() -> None:
    fairness = fairness_by_version(labelled_rows(), ["sex"])
    assert sorted(fairness) == ["1", "2"]
    assert fairness["1"]["demographic_parity_difference"] == 0.0
    # version 2 (probability rows: the larger one is the class) selects every M and no F
    assert fairness["2"]["demographic_parity_difference"] == 1.0
    assert fairness["2"]["passes_four_fifths"] is False


def test_fairness_reports_what_it_cannot_compute_instead_of_raising() -> None:
    missing = fairness_by_version(labelled_rows(), ["sex", "race"])
    assert set(missing) == {"1", "2"}
    assert "['race'] are not among the captured inputs ['age', 'sex']" in missing["1"]["error"]
    rows = labelled_rows()
    rows["label"] = [0.0, 1.0, 2.0, 1.0, 0.0, 1.0, 2.0, 0.0, None]
    assert "binary" in fairness_by_version(rows, ["sex"])["1"]["error"]
    assert fairness_by_version(rows.iloc[:0], ["sex"]) == {}
    assert fairness_by_version(rows.assign(label=None), ["sex"]) == {}


@pytest.mark.parametrize("column", ["status", "version"])
def test_an_input_named_like_a_metadata_column_is_read_from_its_stored_name(column: str) -> None:
    rows = labelled_rows().rename(columns={"sex": f"input.{column}"})
    assert fairness_by_version(rows, [column])["1"]["demographic_parity_difference"] == 0.0


def test_the_monitor_caches_the_fairness_for_ten_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray_deploy.dataplane import monitor as monitor_module
    from ray_deploy.dataplane import rollout_watch

    class Store:
        reads = 0

        def read(self, since: float | None = None, with_labels: bool = True) -> pd.DataFrame:
            Store.reads += 1
            assert since == 100.0 and with_labels
            return labelled_rows()

    class Labels:
        def counts_by_version(self, now: float) -> dict[str, int]:
            return {"1": 4, "2": 4}

    class Watch:
        store, labels = Store(), Labels()

        def performance_section(self, now: float) -> dict[str, object]:
            return {"by_version": {"1": {"accuracy": 1.0}, "2": {"accuracy": 0.5}}}

    monitor = monitor_module.Monitor.__new__(monitor_module.Monitor)
    monitor.name, monitor.watch, monitor.rollouts = "churn", Watch(), RolloutWatch()
    monitor._rollout_active, monitor._fairness = False, (0.0, None, {})
    clock = [1000.0]
    monkeypatch.setattr(monitor_module.time, "time", lambda: clock[0])
    monitor.rollout_begin(sensitive=("sex",), began_at=100.0)
    windows = monitor.rollout_observation()["windows"]
    assert windows["2"].fairness["demographic_parity_difference"] == 1.0 and windows["2"].labels == 4
    clock[0] += rollout_watch.FAIRNESS_EVERY_S - 1
    assert monitor.rollout_observation(False, ("sex",), 100.0)["windows"]["1"].fairness is not None
    assert Store.reads == 1  # cached
    clock[0] += 2
    monitor.rollout_observation()
    assert Store.reads == 2
    # without sensitive columns there is no fairness and nothing is read
    monitor.rollout_begin()
    assert all(w.fairness is None for w in monitor.rollout_observation()["windows"].values())
    assert Store.reads == 2

"""What the Monitor measures for a rollout: per-version windows, shadow pairs and A/B outcomes."""

from __future__ import annotations

import numpy as np

from ray_deploy.dataplane.rollout_watch import RolloutWatch, scalar_predictions
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

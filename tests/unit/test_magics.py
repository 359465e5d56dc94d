"""The magics' argument parsing, variable lookup, YAML specs and error messages, in a real IPython shell.

No cluster: every case here fails before ray_deploy would connect (the unit conftest refuses ``ray.init``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from jupyter_ext.deploy_spec import parse_spec
from ray_deploy import ConfigError, ModelNotFound
from ray_deploy.deployment import Deployment
from tests.unit.models import add_one

MAGICS = (
    "deploy",
    "predict",
    "deployments",
    "undeploy",
    "scale",
    "ray",
    "drift",
    "canary",
    "shadow",
    "abtest",
    "promote",
    "rollback",
    "versions",
)


@pytest.fixture()
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.reset()  # one shell per process: start from an empty namespace whatever ran before
    ip.run_line_magic("load_ext", "jupyter_ext")
    ip.user_ns["clf"] = add_one
    yield ip
    ip.reset()


def run(shell: InteractiveShell, capsys: pytest.CaptureFixture[str], cell: str) -> tuple[str, str]:
    capsys.readouterr()
    shell.run_cell(cell)
    captured = capsys.readouterr()
    return captured.out, captured.err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


def test_every_magic_is_registered_in_line_form_and_deploy_as_cell_magic(shell: InteractiveShell) -> None:
    magics = shell.magics_manager.magics
    assert set(MAGICS) <= set(magics["line"])
    assert "deploy" in magics["cell"]


@pytest.mark.parametrize(
    ("magic", "expected"),
    [
        (
            "deploy",
            ["--name", "--sample", "--gpus", "--cpus", "--min-replicas", "--max-replicas", "--batch", "-o", "%%deploy"],
        ),
        ("predict", ["name", "data", "-o"]),
        ("deployments", ["-o", "delete"]),
        ("undeploy", ["name", "MLflow"]),
        ("scale", ["--min", "--max"]),
        ("ray", ["address", "dashboard"]),
        ("drift", ["name", "--window", "-o", "DriftReport", "histograms"]),
        ("canary", ["name", "model", "--version", "--steps", "--step-s", "--sticky-header", "--sample", "-o", "gates"]),
        ("shadow", ["name", "model", "--version", "--fraction", "-o", "never returned"]),
        ("abtest", ["name", "model", "--version", "--split", "--metric", "-o", "p-value"]),
        ("promote", ["name", "champion"]),
        ("rollback", ["name", "--to", "previous"]),
        ("versions", ["name", "-o", "deployed_by"]),
    ],
)
def test_question_mark_prints_full_help(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], magic: str, expected: list[str]
) -> None:
    out, _ = run(shell, capsys, f"%{magic}?")
    assert f"%{magic}" in out
    for text in expected:
        assert text in out, f"%{magic}? does not mention {text}:\n{out}"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("%deploy", "the following arguments are required: model, --name/-n"),
        ("%deploy clf", "the following arguments are required: --name/-n"),
        ("%deploy clf --name iris --cpus lots", "argument --cpus: invalid float value: 'lots'"),
        ("%deploy clf --name iris --min-replicas 1.5", "argument --min-replicas: invalid int value: '1.5'"),
        ("%deploy clf --name iris --replicas 2", "unrecognized arguments: --replicas 2"),
        ("%deploy clf --name iris -o 1st", "-o '1st': give a Python variable name"),
        ("%predict iris", "the following arguments are required: data"),
        ("%predict iris X -o a.b", "-o 'a.b': give a Python variable name"),
        ("%undeploy", "the following arguments are required: name"),
        ("%undeploy a b", "unrecognized arguments: b"),
        ("%scale", "the following arguments are required: name"),
        ("%scale iris", "%scale needs --min and/or --max"),
        ("%scale iris --min two", "argument --min: invalid int value: 'two'"),
        ("%deployments extra", "unrecognized arguments: extra"),
        ("%ray a b", "unrecognized arguments: b"),
        ("%drift", "the following arguments are required: name"),
        ("%drift iris --window two", "argument --window: invalid int value: 'two'"),
        ("%drift iris --window", "argument --window: expected one argument"),
        ("%drift iris -o 1st", "-o '1st': give a Python variable name"),
        ("%drift iris extra", "unrecognized arguments: extra"),
        ("%canary", "the following arguments are required: name"),
        ("%canary iris", "%canary needs the new model's variable or --version V (not both)"),
        ("%canary iris clf --version 3", "%canary needs the new model's variable or --version V (not both)"),
        ("%canary iris clf --steps 0.1,half,1", "--steps '0.1,half,1': give comma-separated shares"),
        ("%canary iris clf --steps ,", "--steps is empty"),
        ("%canary iris clf --step-s soon", "argument --step-s: invalid float value: 'soon'"),
        ("%canary iris nothere", "no variable named 'nothere' in the notebook for the model; define it first"),
        ("%canary iris clf --sample X[:5]", "the sample input 'X[:5]': name 'X' is not defined"),
        ("%canary iris clf -o 1st", "-o '1st': give a Python variable name"),
        ("%shadow iris", "%shadow needs the new model's variable or --version V (not both)"),
        ("%shadow iris clf --fraction all", "argument --fraction: invalid float value: 'all'"),
        ("%abtest iris --version 3 --split half", "argument --split: invalid float value: 'half'"),
        ("%abtest iris clf --version 3", "%abtest needs the new model's variable or --version V (not both)"),
        ("%promote", "the following arguments are required: name"),
        ("%promote iris extra", "unrecognized arguments: extra"),
        ("%rollback iris --to", "argument --to: expected one argument"),
        ("%versions", "the following arguments are required: name"),
        ("%versions iris -o a.b", "-o 'a.b': give a Python variable name"),
        ("%%deploy\nmodel: clf\n", "the following arguments are required: name"),
        ("%deploy nothere --name iris", "no variable named 'nothere' in the notebook for the model; define it first"),
        ("%deploy clf --name iris --sample X[:5]", "the sample input 'X[:5]': name 'X' is not defined"),
        ("%deploy clf --name iris --sample clf[", "could not evaluate the sample input 'clf[': SyntaxError"),
        ("%predict iris rows", "no variable named 'rows' in the notebook for the input data"),
        ("%%deploy iris\nmodel: nothere\n", "no variable named 'nothere' in the notebook for the model (line 2)"),
        (
            "%%deploy iris\nmodel: clf\nsample_input: X.head()\n",
            "the sample input (line 3) 'X.head()': name 'X' is not defined",
        ),
    ],
)
def test_bad_arguments_and_unknown_variables_print_one_usage_line(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], cell: str, expected: str
) -> None:
    _, err = run(shell, capsys, cell)
    line = one_line(err)
    assert line.startswith("UsageError: ")
    assert expected in line


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("%deploy clf --name 'no spaces'", "ConfigError: invalid deployment name"),
        ("%deploy clf --name ray-deploy", "ConfigError: the name 'ray-deploy' is reserved"),
        (
            "%deploy clf --name iris --min-replicas 3 --max-replicas 2",
            "ConfigError: invalid deployment options: min_replicas=3 is larger than max_replicas=2",
        ),
        ("%deploy clf --name iris --gpus -1", "ConfigError: invalid deployment options: num_gpus: Input should be"),
        ("%deploy clf --name iris --batch 0", "max_batch_size: Input should be greater than or equal to 1 (got 0)"),
        ("weird = object()\n%deploy weird --name iris", "ConfigError: cannot deploy an object of type object"),
        ("%deploy 'not-a-uri' --name iris", "is not an MLflow model URI"),
    ],
)
def test_ray_deploy_errors_print_one_line_without_traceback(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], cell: str, expected: str
) -> None:
    _, err = run(shell, capsys, cell)
    assert expected in one_line(err)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("model: clf\nmax_replica: 2\n", "line 3: 'max_replica' is not a deployment option (did you mean 'max_rep"),
        ("model: clf\nnum_cpus: lots\n", "line 3: 'num_cpus': Input should be a valid number"),
        ("model: clf\nmin_replicas: 3\nmax_replicas: 2\n", "lines 3, 4: min_replicas=3 is larger than max_replicas=2"),
        ("model: clf\nmax_replicas: 2\nmax_replicas: 3\n", "line 4: 'max_replicas' is given twice (also on line 3)"),
        ("max_replicas: 2\n", "missing 'model': name the variable that holds the model"),
        ("model: 42\n", "line 2: 'model' must name a notebook variable"),
        ("model: clf\n  oops: : x\n", "the %%deploy cell is not valid YAML at line 3"),
        ("- clf\n", "must be YAML `key: value` lines, not a list"),
        ("\n", "the %%deploy cell is empty"),
    ],
)
def test_yaml_spec_errors_name_the_key_and_cell_line(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], body: str, expected: str
) -> None:
    _, err = run(shell, capsys, f"%%deploy iris\n{body}")
    line = one_line(err)
    assert line.startswith("ConfigError: ")
    assert expected in line


def test_yaml_spec_parses_variables_and_options() -> None:
    spec = parse_spec("model: clf\nsample_input: X[:5]\nnum_cpus: 0.25\nmin_replicas: 0\nmax_replicas: 2\n", 2)
    assert (spec.model, spec.sample_input) == ("clf", "X[:5]")
    assert spec.options == {"num_cpus": 0.25, "min_replicas": 0, "max_replicas": 2}
    assert spec.lines == {"model": 2, "sample_input": 3, "num_cpus": 4, "min_replicas": 5, "max_replicas": 6}
    assert spec.predict_method == "predict"


def test_yaml_spec_takes_predict_method_apart_from_the_options() -> None:
    spec = parse_spec("model: clf\npredict_method: predict_proba\nmax_replicas: 2\n")
    assert (spec.predict_method, spec.options) == ("predict_proba", {"max_replicas": 2})
    with pytest.raises(ConfigError, match="line 2: 'predict_method' must be one of"):
        parse_spec("model: clf\npredict_method: probabilities\n")


def test_yaml_spec_reports_every_problem_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec("num_gpus: -1\nmax_batch_size: 0\n")
    message = str(info.value)
    assert "missing 'model'" in message
    assert "line 1: 'num_gpus'" in message
    assert "line 2: 'max_batch_size'" in message


def test_unexpected_error_prints_a_short_line_and_keeps_the_traceback_for_tb(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    # a model whose class has no module name breaks model classification: not a user error
    _, err = run(shell, capsys, "class Odd:\n    pass\nOdd.__module__ = None\nweird = Odd()")
    assert err == ""
    _, err = run(shell, capsys, "%deploy weird --name iris")
    line = one_line(err)
    assert line.startswith("%deploy failed unexpectedly: AttributeError: ")
    assert line.endswith("(run %tb for the traceback)")
    out, _ = run(shell, capsys, "%tb")
    assert "Traceback" in out
    assert "model_kind" in out


def test_tb_shows_the_full_error_after_a_user_error(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    run(shell, capsys, "%deploy clf --name iris --min-replicas 3 --max-replicas 2")
    out, _ = run(shell, capsys, "%tb")
    assert "ConfigError" in out
    assert "min_replicas=3 is larger than max_replicas=2" in out


def test_extension_shows_deployments_with_the_card_formatter(shell: InteractiveShell) -> None:
    formatter = shell.display_formatter.mimebundle_formatter
    printer = formatter.lookup(Deployment("iris"))
    assert printer.__module__ == "jupyter_ext"
    shell.run_line_magic("unload_ext", "jupyter_ext")
    with pytest.raises(KeyError):
        formatter.lookup(Deployment("iris"))
    shell.run_line_magic("load_ext", "jupyter_ext")
    assert formatter.lookup(Deployment("iris")) is printer


class _FakeDeployment:
    """What ``ray_deploy.get`` returns, for the %drift cases that need no cluster: a report, or an error."""

    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.name, self.error, self.windows = name, error, []

    def drift_report(self, window: int | None = None) -> Any:
        from tests.unit.test_drift_panel import HISTOGRAMS, DriftReport, section

        self.windows.append(window)
        if self.error is not None:
            raise self.error
        return DriftReport.from_document({"section": section(), "histograms": HISTOGRAMS})


def test_drift_shows_the_panel_and_stores_the_report(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray_deploy

    got: list[_FakeDeployment] = []
    monkeypatch.setattr(ray_deploy, "get", lambda name: got.append(_FakeDeployment(name)) or got[-1])
    shown: list[Any] = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **_: shown.append(obj))
    _, err = run(shell, capsys, "%drift iris --window 3 -o rep")
    assert err == ""
    assert [(d.name, d.windows) for d in got] == [("iris", [3])]
    report = shell.user_ns["rep"]
    assert list(report.drifted_features) == ["petal_length"]
    (page,) = shown  # no kernel here: the static HTML fallback
    assert "drift warning" in page.data and "ray-deploy-drift-table" in page.data
    run(shell, capsys, "%drift iris")
    assert got[-1].windows == [None]


def test_drift_errors_print_one_line(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray_deploy

    error = ConfigError("window 9 does not exist: 3 windows have closed (0..2)")
    monkeypatch.setattr(ray_deploy, "get", lambda name: _FakeDeployment(name, error))
    _, err = run(shell, capsys, "%drift iris --window 9 -o rep")
    assert one_line(err) == "ConfigError: window 9 does not exist: 3 windows have closed (0..2)"
    assert "rep" not in shell.user_ns

    def missing(name: str) -> Any:
        raise ModelNotFound(f"no deployment named {name!r}; deployed: ['fraud']")

    monkeypatch.setattr(ray_deploy, "get", missing)
    _, err = run(shell, capsys, "%drift churn")
    assert one_line(err) == "ModelNotFound: no deployment named 'churn'; deployed: ['fraud']"


class _FakeRollout:
    """What ``Deployment.canary`` / ``shadow`` / ``ab_test`` return: its status is the fixture's rollout."""

    def __init__(self, mode: str) -> None:
        from tests.unit.fake_manager import fixture

        self.section = {**fixture("status.json")["rollout"], "mode": mode}

    def status(self) -> dict[str, Any]:
        return self.section


class _FakeRollouts:
    """What ``ray_deploy.get`` returns for the rollout magics: records every call."""

    def __init__(self, name: str, calls: list[tuple[Any, ...]], error: Exception | None = None) -> None:
        self.name, self.calls, self.error, self.version = name, calls, error, "3"

    def _call(self, *call: Any) -> None:
        self.calls.append((self.name, *call))
        if self.error is not None:
            raise self.error

    def canary(self, target: Any, **options: Any) -> _FakeRollout:
        self._call("canary", target, options)
        return _FakeRollout("canary")

    def shadow(self, target: Any, **options: Any) -> _FakeRollout:
        self._call("shadow", target, options)
        return _FakeRollout("shadow")

    def ab_test(self, target: Any, **options: Any) -> _FakeRollout:
        self._call("ab_test", target, options)
        return _FakeRollout("ab")

    def promote(self) -> None:
        self._call("promote")

    def rollback(self, to_version: str | None = None) -> None:
        self._call("rollback", to_version)
        self.version = to_version or "2"

    def versions(self) -> Any:
        import pandas as pd

        self._call("versions")
        return pd.DataFrame(
            {
                "version": ["2", "3"],
                "aliases": [["champion"], ["challenger"]],
                "created_at": [1.0, 2.0],
                "deployed_by": ["ana", "ana"],
                "serving": [True, True],
                "metrics": [{"accuracy": 0.93}, {}],
            }
        )


@pytest.fixture()
def rollouts(monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """``ray_deploy.get`` answers with :class:`_FakeRollouts`; ``display`` is recorded. Returns (calls, shown)."""
    import ray_deploy

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(ray_deploy, "get", lambda name: _FakeRollouts(name, calls))
    shown: list[Any] = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **_: shown.append(obj))
    return calls, shown


def test_canary_passes_only_the_given_options_and_shows_the_rollout(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], rollouts: tuple[list[Any], list[Any]]
) -> None:
    calls, shown = rollouts
    shell.user_ns["X"] = [[1.0, 2.0]]
    _, err = run(
        shell,
        capsys,
        "%canary iris clf --steps 0.1,0.5,1 --step-s 30 --sticky-header x-user-id --sample X[:1] -o ro",
    )
    assert err == ""
    assert calls == [
        (
            "iris",
            "canary",
            add_one,
            {"steps": (0.1, 0.5, 1.0), "step_s": 30.0, "sticky_header": "x-user-id", "sample_input": [[1.0, 2.0]]},
        )
    ]
    assert shell.user_ns["ro"].section["mode"] == "canary"
    (page,) = shown  # no kernel here: the static HTML of the rollout
    assert "rollout: iris" in page.data and "canary v2 → v3" in page.data
    calls.clear()
    run(shell, capsys, "%canary iris --version 3")
    assert calls == [("iris", "canary", "3", {})]


def test_shadow_and_abtest_take_a_version_or_a_model(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], rollouts: tuple[list[Any], list[Any]]
) -> None:
    calls, shown = rollouts
    _, err = run(shell, capsys, "%shadow iris --version 3 --fraction 0.5 -o sh")
    assert err == ""
    _, err = run(shell, capsys, "%abtest iris clf --split 0.3 --metric f1")
    assert err == ""
    assert calls == [
        ("iris", "shadow", "3", {"fraction": 0.5}),
        ("iris", "ab_test", add_one, {"split": 0.3, "metric": "f1"}),
    ]
    assert "shadow v2 → v3" in shown[0].data and "A/B test v2 → v3" in shown[1].data
    assert shell.user_ns["sh"].section["mode"] == "shadow"


def test_promote_rollback_and_versions(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], rollouts: tuple[list[Any], list[Any]]
) -> None:
    calls, _ = rollouts
    out, err = run(shell, capsys, "%promote iris")
    assert (out.strip(), err) == ("promoted 'iris': version 3 is the champion", "")
    out, err = run(shell, capsys, "%rollback iris --to 1")
    assert (out.strip(), err) == ("rolled back 'iris': version 1 is the champion", "")
    run(shell, capsys, "%rollback iris")
    _, err = run(shell, capsys, "%versions iris -o vs")
    assert err == ""
    assert calls == [
        ("iris", "promote"),
        ("iris", "rollback", "1"),
        ("iris", "rollback", None),
        ("iris", "versions"),
    ]
    table = shell.user_ns["vs"]
    assert list(table.columns) == ["version", "aliases", "created_at", "deployed_by", "serving", "metrics"]
    assert shell.run_line_magic("versions", "iris").equals(table)  # also the cell's value


def test_rollout_errors_print_one_line(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray_deploy

    error = ConfigError("steps must rise strictly within (0, 1], got [0.5, 0.1, 1.0]")
    monkeypatch.setattr(ray_deploy, "get", lambda name: _FakeRollouts(name, [], error))
    _, err = run(shell, capsys, "%canary iris clf --steps 0.5,0.1,1 -o ro")
    assert one_line(err) == "ConfigError: steps must rise strictly within (0, 1], got [0.5, 0.1, 1.0]"
    assert "ro" not in shell.user_ns
    _, err = run(shell, capsys, "%promote iris")
    assert one_line(err).startswith("ConfigError: ")

    def missing(name: str) -> Any:
        raise ModelNotFound(f"no deployment named {name!r}; deployed: ['fraud']")

    monkeypatch.setattr(ray_deploy, "get", missing)
    for cell in ("%rollback churn", "%versions churn", "%shadow churn --version 2"):
        _, err = run(shell, capsys, cell)
        assert one_line(err) == "ModelNotFound: no deployment named 'churn'; deployed: ['fraud']"


# ---- %retrain and %auto_retrain --------------------------------------------------------------------------


class _FakeRetrainResult:
    """What ``ray_deploy.retrain(..., wait=False)`` returns: its status is the running retrain fixture's."""

    def __init__(self, name: str) -> None:
        from tests.unit.fake_manager import fixture

        self.name, self.retrain_id = name, "retrain-iris-0123456789ab"
        self.section = fixture("status-retrain-running.json")["retrain"]

    def status(self) -> dict[str, Any]:
        return self.section


class _FakeAutoRetrain:
    """What ``ray_deploy.get`` returns for %auto_retrain: records every policy call."""

    def __init__(self, name: str, calls: list[tuple[Any, ...]]) -> None:
        self.name, self.calls = name, calls

    def auto_retrain(self, on: str | None = None, **options: Any) -> None:
        self.calls.append((self.name, on, options))


@pytest.fixture()
def retrains(monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """``ray_deploy.retrain`` and ``ray_deploy.get`` record their calls; ``display`` too. Returns (calls, shown)."""
    import ray_deploy

    calls: list[tuple[Any, ...]] = []

    def retrain(name: str, **options: Any) -> _FakeRetrainResult:
        calls.append((name, options))
        return _FakeRetrainResult(name)

    monkeypatch.setattr(ray_deploy, "retrain", retrain, raising=False)
    monkeypatch.setattr(ray_deploy, "get", lambda name: _FakeAutoRetrain(name, calls))
    shown: list[Any] = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **_: shown.append(obj))
    return calls, shown


def test_retrain_magics_are_registered_with_full_help(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    assert {"retrain", "auto_retrain"} <= set(shell.magics_manager.magics["line"])
    out, _ = run(shell, capsys, "%retrain?")
    for text in ("%retrain", "--trials", "--cpus", "--gpus", "--budget", "--scheduler", "--then", "--metric", "-o"):
        assert text in out, f"%retrain? does not mention {text}"
    out, _ = run(shell, capsys, "%auto_retrain?")
    for text in ("%auto_retrain", "--on", "--then", "--cooldown", "--every", "--min-metric", "--trials", "--off"):
        assert text in out, f"%auto_retrain? does not mention {text}"


def test_retrain_passes_the_given_options_and_shows_the_panel(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], retrains: tuple[list[Any], list[Any]]
) -> None:
    calls, shown = retrains
    cell = (
        "%retrain iris --trials 16 --cpus 2 --gpus 0.5 --budget 300 --scheduler fifo --then canary --metric f1 -o job"
    )
    _, err = run(shell, capsys, cell)
    assert err == ""
    assert calls == [
        (
            "iris",
            {
                "num_samples": 16,
                "resources_per_trial": {"cpu": 2.0, "gpu": 0.5},
                "time_budget_s": 300.0,
                "scheduler": "fifo",
                "then": "canary",
                "metric": "f1",
                "wait": False,
            },
        )
    ]
    assert shell.user_ns["job"].retrain_id == "retrain-iris-0123456789ab"
    (page,) = shown  # no kernel here: the static HTML of the retrain
    assert "retrain: iris" in page.data and "data-state='running'" in page.data and "3f2a_00001" in page.data
    calls.clear()
    run(shell, capsys, "%retrain iris")
    run(shell, capsys, "%retrain iris --gpus 1")
    assert calls == [
        ("iris", {"wait": False}),
        ("iris", {"resources_per_trial": {"cpu": 1.0, "gpu": 1.0}, "wait": False}),
    ]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("%retrain", "the following arguments are required: name"),
        ("%retrain iris --trials many", "argument --trials: invalid int value: 'many'"),
        ("%retrain iris --gpus half", "argument --gpus: invalid float value: 'half'"),
        ("%retrain iris --budget", "argument --budget: expected one argument"),
        ("%retrain iris --scheduler pbt", "argument --scheduler: invalid choice: 'pbt'"),
        ("%retrain iris --then promote", "argument --then: invalid choice: 'promote'"),
        ("%retrain iris -o 1st", "-o '1st': give a Python variable name"),
        ("%retrain iris extra", "unrecognized arguments: extra"),
        ("%auto_retrain", "the following arguments are required: name"),
        ("%auto_retrain iris", "%auto_retrain needs --on drift|schedule|performance or --off"),
        ("%auto_retrain iris --on weather", "argument --on: invalid choice: 'weather'"),
        ("%auto_retrain iris --on drift --cooldown soon", "argument --cooldown: invalid float value: 'soon'"),
        ("%auto_retrain iris --off --on drift", "%auto_retrain --off takes no other option, got --on"),
    ],
)
def test_retrain_usage_errors_print_one_line(
    shell: InteractiveShell,
    capsys: pytest.CaptureFixture[str],
    retrains: tuple[list[Any], list[Any]],
    cell: str,
    expected: str,
) -> None:
    calls, _ = retrains
    _, err = run(shell, capsys, cell)
    line = one_line(err)
    assert line.startswith("UsageError: ")
    assert expected in line
    assert calls == []  # nothing reached the cluster


def test_auto_retrain_sets_and_turns_off_the_policy(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], retrains: tuple[list[Any], list[Any]]
) -> None:
    calls, _ = retrains
    out, err = run(shell, capsys, "%auto_retrain iris --on drift --then canary --cooldown 600 --trials 4")
    assert err == ""
    assert out.strip() == "auto-retrain of 'iris' is on: retrain on drift (then canary, cooldown_s 600, num_samples 4)"
    run(shell, capsys, "%auto_retrain iris --on schedule --every 3600")
    run(shell, capsys, "%auto_retrain iris --on performance --min-metric 0.8")
    out, err = run(shell, capsys, "%auto_retrain iris --off")
    assert (out.strip(), err) == ("auto-retrain of 'iris' is off", "")
    assert calls == [
        ("iris", "drift", {"then": "canary", "cooldown_s": 600.0, "num_samples": 4}),
        ("iris", "schedule", {"every_s": 3600.0}),
        ("iris", "performance", {"min_metric": 0.8}),
        ("iris", None, {}),
    ]


def test_retrain_errors_print_one_line(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray_deploy

    def no_labels(name: str, **options: Any) -> Any:
        raise ConfigError(f"no labelled rows to retrain {name!r} on: send labels with feedback() or pass data=")

    monkeypatch.setattr(ray_deploy, "retrain", no_labels, raising=False)
    _, err = run(shell, capsys, "%retrain iris -o job")
    assert one_line(err) == (
        "ConfigError: no labelled rows to retrain 'iris' on: send labels with feedback() or pass data="
    )
    assert "job" not in shell.user_ns

    def missing(name: str) -> Any:
        raise ModelNotFound(f"no deployment named {name!r}; deployed: ['fraud']")

    monkeypatch.setattr(ray_deploy, "get", missing)
    _, err = run(shell, capsys, "%auto_retrain churn --on drift")
    assert one_line(err) == "ModelNotFound: no deployment named 'churn'; deployed: ['fraud']"

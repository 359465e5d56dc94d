"""Deployment options and settings: defaults, constraints and the messages users see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ray_deploy.config import DeployOptions, Settings, parse_options, validate_name
from ray_deploy.errors import ConfigError


def test_defaults_serve_one_fixed_replica() -> None:
    opts = parse_options()
    assert (opts.min_replicas, opts.max_replicas, opts.autoscaling) == (1, 1, False)
    assert opts.batch_size(is_torch=True) == 32
    assert opts.batch_size(is_torch=False) == 1
    assert opts.ongoing_requests(is_torch=True) == 64


def test_scale_to_zero_turns_autoscaling_on() -> None:
    opts = parse_options(min_replicas=0, max_replicas=3, initial_replicas=1)
    assert opts.autoscaling
    assert opts.initial_replicas == 1


def test_min_above_max_names_both_values() -> None:
    with pytest.raises(ConfigError) as err:
        parse_options(min_replicas=3, max_replicas=2)
    assert "min_replicas=3" in str(err.value) and "max_replicas=2" in str(err.value)


def test_initial_replicas_outside_range_names_all_three() -> None:
    with pytest.raises(ConfigError, match="initial_replicas=5 must lie between min_replicas=0 and max_replicas=2"):
        parse_options(min_replicas=0, max_replicas=2, initial_replicas=5)


def test_unknown_option_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        parse_options(num_cpu=1)
    message = str(err.value)
    assert "num_cpu: unknown option" in message and "num_cpus" in message and "max_batch_size" in message


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("num_cpus", 0, "num_cpus: Input should be greater than 0 (got 0)"),
        ("num_gpus", -0.5, "num_gpus: Input should be greater than or equal to 0"),
        ("max_body_mb", "lots", "max_body_mb: Input should be a valid number"),
        ("max_batch_size", 0, "max_batch_size: Input should be greater than or equal to 1"),
    ],
)
def test_bad_values_are_named(option: str, value: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match="invalid deployment options") as err:
        parse_options(**{option: value})
    assert fragment in str(err.value)


def test_fractional_gpus_are_accepted() -> None:
    assert parse_options(num_gpus=0.5).num_gpus == 0.5


def test_parse_options_merges_onto_a_base() -> None:
    base = DeployOptions(num_cpus=0.25, max_replicas=4)
    merged = parse_options(base, min_replicas=0)
    assert (merged.num_cpus, merged.min_replicas, merged.max_replicas) == (0.25, 0, 4)


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("RAY_DEPLOY_HOME", str(tmp_path))
    monkeypatch.setenv("RAY_DEPLOY_HTTP_PORT", "9123")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings.from_env()
    assert settings.endpoint == "http://127.0.0.1:9123"
    assert settings.mlflow_uri == f"sqlite:///{tmp_path}/mlflow.db"


_ENV_VARIABLES = (
    "RAY_DEPLOY_HOME",
    "RAY_ADDRESS",
    "MLFLOW_TRACKING_URI",
    "RAY_DEPLOY_HTTP_HOST",
    "RAY_DEPLOY_HTTP_PORT",
    "RAY_DEPLOY_RAY_PORT",
    "RAY_DEPLOY_DASHBOARD_PORT",
    "RAY_DEPLOY_NUM_CPUS",
    "RAY_DEPLOY_AUTOSCALER",
    "RAY_DEPLOY_CAPTURE_URI",
    "RAY_DEPLOY_METRICS_PORT",
    "RAY_DEPLOY_GRPC_PORT",
    "RAY_DEPLOY_INGRESS",
    "RAY_DEPLOY_AUDIT_PATH",
    "RAY_DEPLOY_TLS_CERT",
    "RAY_DEPLOY_TLS_KEY",
)


@pytest.mark.parametrize("everything_set", [False, True])
def test_settings_to_env_is_the_inverse_of_from_env(
    everything_set: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if everything_set:  # a value different from the default for every field, so a forgotten one shows
        settings = Settings(
            home=tmp_path / "home",
            ray_address="head.example:6380",
            mlflow_uri="http://mlflow.example:5000",
            http_host="0.0.0.0",
            http_port=8123,
            ray_port=6390,
            dashboard_port=8299,
            num_cpus=3,
            autoscaler=True,
            capture_uri="s3://bucket/captures",
            metrics_port=9191,
            grpc_port=9444,
            ingress="proxy",
            tls_cert=tmp_path / "cert.pem",
            tls_key=tmp_path / "key.pem",
        )
        assert all(getattr(settings, f) != d for f, d in Settings.from_env().model_dump().items() if f != "home")
    else:
        for key in _ENV_VARIABLES:
            monkeypatch.delenv(key, raising=False)
        settings = Settings.from_env()
    env = settings.to_env()
    assert set(env) <= set(_ENV_VARIABLES)
    for key in _ENV_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings.from_env() == settings


def test_tls_makes_the_endpoint_https(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RAY_DEPLOY_TLS_CERT", raising=False)
    monkeypatch.delenv("RAY_DEPLOY_TLS_KEY", raising=False)
    monkeypatch.setenv("RAY_DEPLOY_HTTP_PORT", "8443")
    assert Settings.from_env().endpoint == "http://127.0.0.1:8443" and not Settings.from_env().tls
    monkeypatch.setenv("RAY_DEPLOY_TLS_CERT", str(tmp_path / "cert.pem"))
    monkeypatch.setenv("RAY_DEPLOY_TLS_KEY", str(tmp_path / "key.pem"))
    settings = Settings.from_env()
    assert settings.tls and settings.endpoint == "https://127.0.0.1:8443"
    assert settings.tls_key == tmp_path / "key.pem"


def test_tls_needs_both_files_and_names_both(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAY_DEPLOY_TLS_CERT", str(tmp_path / "cert.pem"))
    monkeypatch.delenv("RAY_DEPLOY_TLS_KEY", raising=False)
    with pytest.raises(ConfigError, match="TLS needs both RAY_DEPLOY_TLS_CERT") as err:
        Settings.from_env()
    assert f"RAY_DEPLOY_TLS_CERT ({tmp_path / 'cert.pem'})" in str(err.value)
    assert "RAY_DEPLOY_TLS_KEY (None)" in str(err.value)


def test_tls_settings_reach_serves_http_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ray_deploy.cluster import http_options

    monkeypatch.setenv("RAY_DEPLOY_HTTP_PORT", "8443")
    monkeypatch.delenv("RAY_DEPLOY_TLS_CERT", raising=False)
    monkeypatch.delenv("RAY_DEPLOY_TLS_KEY", raising=False)
    assert http_options(Settings.from_env()) == {"host": "127.0.0.1", "port": 8443}
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    monkeypatch.setenv("RAY_DEPLOY_TLS_CERT", str(cert))
    monkeypatch.setenv("RAY_DEPLOY_TLS_KEY", str(key))
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=f"RAY_DEPLOY_TLS_KEY={key} is not a file"):
        http_options(Settings.from_env())
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    options = http_options(Settings.from_env())
    assert options["ssl_certfile"] == str(cert) and options["ssl_keyfile"] == str(key)


def test_serve_request_metrics_come_from_replicas_unless_the_environment_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under HAProxy the local head leaves Serve's request metrics to the replicas (no Python parse of a HAProxy log
    line per request); Serve's own variable in the environment still decides."""
    from ray_deploy.cluster import _ingress_env

    monkeypatch.setenv("RAY_DEPLOY_HOME", str(tmp_path))
    monkeypatch.setenv("RAY_DEPLOY_INGRESS", "haproxy")
    monkeypatch.delenv("RAY_DEPLOY_TLS_CERT", raising=False)
    monkeypatch.delenv("RAY_DEPLOY_TLS_KEY", raising=False)
    monkeypatch.delenv("RAY_SERVE_HAPROXY_METRICS_ENABLED", raising=False)
    env = _ingress_env(Settings.from_env())
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "0"
    monkeypatch.setenv("RAY_SERVE_HAPROXY_METRICS_ENABLED", "1")
    assert _ingress_env(Settings.from_env())["RAY_SERVE_HAPROXY_METRICS_ENABLED"] == "1"
    monkeypatch.setenv("RAY_DEPLOY_INGRESS", "proxy")
    assert "RAY_SERVE_HAPROXY_METRICS_ENABLED" not in _ingress_env(Settings.from_env())


def test_bad_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_DEPLOY_HTTP_PORT", "eighty")
    with pytest.raises(ConfigError, match="invalid ray-deploy environment settings"):
        Settings.from_env()


@pytest.mark.parametrize("name", ["iris", "churn-v2", "a.b_c"])
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "has space", "a/b", "x" * 64, 3])
def test_bad_names_explain_the_rule(name: object) -> None:
    with pytest.raises(ConfigError, match="use 1-63 letters, digits"):
        validate_name(name)


def test_server_app_name_is_reserved() -> None:
    with pytest.raises(ConfigError, match="reserved"):
        validate_name("ray-deploy")

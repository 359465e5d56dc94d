"""Pins every private Ray/Serve name serve_api.py relies on, so a Ray upgrade that moves one fails here."""

from __future__ import annotations

import importlib
import inspect

import pytest

from ray_deploy import serve_api


@pytest.mark.parametrize(("module", "name"), serve_api.PRIVATE_NAMES)
def test_private_name_exists(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} is gone; update serve_api.py"


def test_controller_methods_used_by_app_details_exist() -> None:
    from ray.serve._private.client import ServeControllerClient
    from ray.serve._private.controller import ServeController

    assert "self._controller" in inspect.getsource(ServeControllerClient.__init__)
    for method in ("get_serve_status", "get_deployment_details", "get_serve_instance_details"):
        assert hasattr(ServeController, method), f"ServeController.{method} is gone; update serve_api.app_details"
    assert list(inspect.signature(ServeController.get_deployment_details).parameters)[1:] == [
        "app_name",
        "deployment_name",
    ]


def test_run_app_keeps_the_non_blocking_flag() -> None:
    from ray.serve.api import _run

    assert "_blocking" in inspect.signature(_run).parameters


def test_request_id_outside_a_request_is_fresh() -> None:
    first, second = serve_api.request_id(), serve_api.request_id()
    assert first and second and first != second


def test_a_pinned_code_version_survives_options_and_reaches_the_deploy_arguments() -> None:
    from ray import serve

    class Echo:
        def __call__(self) -> str:
            return "echo"

    deployment = serve_api.pin_code_version(serve.deployment(Echo), "0.1.0-abc")
    assert deployment.options(num_replicas=2)._version == "0.1.0-abc"  # what client.deploy_applications sends
    import inspect

    from ray.serve._private import client

    assert "deployment._version or get_random_string()" in inspect.getsource(client)


def test_deployment_handle_can_skip_the_existence_check() -> None:
    import inspect

    from ray import serve

    assert "_check_exists" in inspect.signature(serve.get_deployment_handle).parameters


def test_the_serve_client_can_stop_its_cached_handles() -> None:
    from ray.serve._private.client import ServeControllerClient

    assert callable(ServeControllerClient.shutdown_cached_handles)


def test_after_release_nothing_reconnects_the_process_to_ray_until_connect_allows_it() -> None:
    """A Serve handle's thread calling Ray after ``ray.shutdown()`` must get an error, not start or join a cluster."""
    import ray
    from ray._private import auto_init_hook

    assert not ray.is_initialized()
    serve_api.release_driver()  # no Serve client in this process: only auto-connect goes off
    try:
        assert auto_init_hook.enable_auto_connect is False
        with pytest.raises(Exception, match="(?i)not .*(started|initialized)|ray.init"):
            ray.put(1)
        assert not ray.is_initialized()
    finally:
        serve_api.allow_auto_connect()
    assert auto_init_hook.enable_auto_connect is True


def test_the_exit_release_is_registered_once_however_often_ray_init_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registered again after each ``ray.init`` (so it runs before Ray's own exit hook), never twice."""
    import atexit

    hooks: list[object] = []

    def unregister(func: object) -> None:
        hooks[:] = [hook for hook in hooks if hook is not func]

    monkeypatch.setattr(atexit, "register", hooks.append)
    monkeypatch.setattr(atexit, "unregister", unregister)
    hooks.append(print)  # as if Ray's hook came after ours: ours must move behind it
    serve_api.release_driver_at_exit()
    hooks.append(input)
    serve_api.release_driver_at_exit()
    assert hooks == [print, input, serve_api.release_driver]

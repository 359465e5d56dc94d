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

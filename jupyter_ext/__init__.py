"""Jupyter integration of ray-deploy: IPython magics, widgets, the jupyter-server extension and the
JupyterLab side panel. Depends on ``ray_deploy`` only; every hook imports its module lazily, so importing
this package is cheap.

Example:
    In a notebook: ``%load_ext jupyter_ext`` then ``%deploy clf --name iris``.
"""

from __future__ import annotations

from typing import Any

LABEXTENSION_NAME = "ray-deploy"


def load_ipython_extension(ipython: Any) -> None:
    """Register the ray-deploy magics and show ``ray_deploy.Deployment`` values as live cards.

    Example:
        >>> %load_ext jupyter_ext
    """
    from jupyter_ext.magics import register
    from ray_deploy.deployment import Deployment

    register(ipython)
    ipython.display_formatter.mimebundle_formatter.for_type(Deployment, _deployment_mimebundle)


def unload_ipython_extension(ipython: Any) -> None:
    """Stop showing ``Deployment`` values as cards (``%unload_ext jupyter_ext``); the magics stay registered."""
    from ray_deploy.deployment import Deployment

    ipython.display_formatter.mimebundle_formatter.type_printers.pop(Deployment, None)


def _deployment_mimebundle(deployment: Any) -> dict[str, Any] | None:
    from jupyter_ext.widgets import deployment_mimebundle  # ipywidgets loads on first display only

    return deployment_mimebundle(deployment)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The jupyter-server extension (REST handlers under ``/ray-deploy/api/``)."""
    return [{"module": "jupyter_ext"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from jupyter_ext.handlers import setup_handlers

    setup_handlers(server_app.web_app)
    server_app.log.info("ray-deploy server extension loaded")


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt JupyterLab side panel shipped in the wheel."""
    return [{"src": "labextension", "dest": LABEXTENSION_NAME}]

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
    """Register the ray-deploy magics (``%load_ext jupyter_ext``)."""
    from jupyter_ext.magics import register

    register(ipython)


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

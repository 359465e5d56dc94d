"""The only module that calls private Ray and Serve APIs; everything else uses these functions.

Serve's public API has no way to deploy without blocking, read one application's replica details, get
the current request's id, or find the dashboard URL; these wrappers do, and ``tests/unit/test_serve_api.py``
pins every private name they rely on, so a Ray upgrade that moves one fails there first.

Example:
    >>> run_app(app, name="iris", route_prefix="/v2/models/iris")
    >>> app_details("iris")["deployments"]["ModelServer"]["target_num_replicas"]
    1
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

from ray_deploy.errors import NotReady

log = logging.getLogger(__name__)

# Every private attribute used below, as (module, attribute); the pinning test imports each.
PRIVATE_NAMES = (
    ("ray.serve.api", "_run"),
    ("ray.serve.context", "_get_global_client"),
    ("ray.serve.context", "_global_client"),
    ("ray.serve._private.client", "ServeControllerClient"),
    ("ray._private.auto_init_hook", "enable_auto_connect"),
    ("ray.serve.context", "_get_serve_request_context"),
    ("ray.serve._private.application_state", "StatusOverview"),
    ("ray.serve.generated.serve_pb2", "StatusOverview"),
    ("ray._private.worker", "get_dashboard_url"),
    ("ray._private.authentication.authentication_token_setup", "maybe_enable_token_auth_if_token_available"),
    ("ray._private.ray_constants", "ENABLE_RAY_CLUSTER"),
    ("ray._private.ray_constants", "ENABLE_RAY_CLUSTERS_ENV_VAR"),
)

# On Linux, Ray replaces a loopback node IP (``ray start --node-ip-address=127.0.0.1``, ``ray.init(address=
# "127.0.0.1:...")``) by the machine's routable IP, and its gRPC servers then listen on all interfaces. With this
# variable at "0" Ray treats the machine as single-node (what it does on macOS and Windows): the node IP stays
# 127.0.0.1, and the GCS, raylet, workers and agents bind to loopback. The local head is started with it, and a
# process that connects to the local head must resolve "127.0.0.1" the same way (:func:`loopback_node`).
SINGLE_NODE_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR


def pin_code_version(deployment: Any, version: str) -> Any:
    """Give a deployment a stable code version, so a redeploy that changes only its configuration (user_config,
    replica counts) reconfigures the running replicas in place. Serve draws a random version for each deploy of an
    unversioned deployment, which restarts every replica (losing the Monitor's state) on each change; its public
    ``version`` argument was removed, while ``Deployment._version`` is still what it sends to the controller."""
    deployment._version = version
    return deployment


HANDLE_STOP_S = 5.0
"""Longest wait for this process's Serve handles to stop before it disconnects."""


def release_driver() -> None:
    """Before this process disconnects from Ray: stop its Serve handles and turn Ray's auto-connect off.

    A handle's router runs in a thread of Serve's that keeps calling the controller (a long poll, and the handle's
    autoscaling metrics every half second). After ``ray.shutdown()`` such a call connects the process to Ray again
    (Ray's auto-connect); when that cluster is the local head being stopped, the process then waits 60 s for its GCS
    and aborts, after the work it did (seen at the end of test sessions and benchmarks). :func:`allow_auto_connect`
    turns auto-connect back on (``connect()`` calls it).

    Example:
        >>> release_driver(); ray.shutdown()
    """
    import threading

    import ray
    from ray._private import auto_init_hook
    from ray.serve import context

    auto_init_hook.enable_auto_connect = False
    client = context._global_client
    if client is not None and ray.is_initialized():
        stopping = threading.Thread(target=_stop_handles, args=(client,), name="stop-serve-handles", daemon=True)
        stopping.start()
        stopping.join(HANDLE_STOP_S)


def _stop_handles(client: Any) -> None:
    try:
        client.shutdown_cached_handles()
    except Exception:  # the process is leaving Ray: a handle that cannot stop must not stop that
        log.debug("could not stop the Serve handles", exc_info=True)


def release_driver_at_exit() -> None:
    """Run :func:`release_driver` when the interpreter exits, before Ray's own exit hook disconnects (exit hooks run
    in reverse order of registration, and ``ray.init`` registers Ray's): call it after ``ray.init``.

    A script or the demo that ends without ``shutdown()`` otherwise leaves the handles' threads to reconnect the
    process while it exits ("Connecting to existing Ray cluster ..." after its last line).
    """
    import atexit

    atexit.unregister(release_driver)
    atexit.register(release_driver)


def allow_auto_connect() -> None:
    """Undo :func:`release_driver`'s hold on Ray's auto-connect (as the environment set it)."""
    from ray._private import auto_init_hook

    auto_init_hook.enable_auto_connect = os.environ.get("RAY_ENABLE_AUTO_CONNECT", "") != "0"


def run_app(app: Any, name: str, route_prefix: str) -> None:
    """Deploy (or update) an application without waiting; the caller polls :func:`app_details`."""
    from ray.serve.api import _run

    _run(app, name=name, route_prefix=route_prefix, _blocking=False)


def _client() -> Any:
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        raise NotReady("Ray Serve is not running on this cluster; call ray_deploy.connect() to start it")
    return client


def deployment_handle(app: str, deployment: str) -> Any:
    """A handle on a deployment of an application, without asking the controller whether it exists first.

    ``serve.get_deployment_handle`` checks against the controller's deployment list, which a driver started as a
    Ray Job was seen to get without the app's deployments; calls on a missing deployment fail when made instead.
    """
    from ray import serve

    return serve.get_deployment_handle(deployment, app_name=app, _check_exists=False)


def serve_details() -> dict[str, Any]:
    """Serve's view of every application (what the dashboard's ``/api/serve/applications/`` shows)."""
    details: dict[str, Any] = _client().get_serve_details()
    return details


def app_details(name: str, deployment: str = "ModelServer") -> dict[str, Any]:
    """One application's status and one deployment's details, shaped like an entry of :func:`serve_details`.

    Reads only that application from the controller, so a Monitor's status read costs the same whatever
    the number of deployments on the cluster. An unknown name gives ``status == "NOT_STARTED"``.
    """
    import ray

    controller = _client()._controller
    from ray.serve._private.application_state import StatusOverview
    from ray.serve.generated.serve_pb2 import StatusOverview as StatusOverviewProto  # type: ignore[attr-defined]

    overview = StatusOverview.from_proto(
        StatusOverviewProto.FromString(ray.get(controller.get_serve_status.remote(name)))
    )
    app: dict[str, Any] = {
        "name": name,
        "status": overview.app_status.status.value,
        "message": overview.app_status.message,
        "last_deployed_time_s": overview.app_status.deployment_timestamp,
        "deployments": {},
    }
    if overview.get_deployment_status(deployment) is not None:
        details = ray.get(controller.get_deployment_details.remote(name, deployment))
        app["deployments"][deployment] = details.model_dump(mode="json", exclude_unset=True)
    return app


def request_id() -> str:
    """The id Serve gave the current request (``X-Request-Id``), or a fresh one outside a request."""
    from ray.serve.context import _get_serve_request_context

    try:
        found = str(_get_serve_request_context().request_id)
    except Exception:  # outside a Serve request (e.g. a unit test) there is no context
        found = ""
    return found or uuid.uuid4().hex


def dashboard_url() -> str | None:
    """The Ray dashboard URL of the connected cluster, as Ray reports it (``host:port``), if any."""
    from ray._private.worker import get_dashboard_url

    url: str | None = get_dashboard_url()
    return url


@contextlib.contextmanager
def loopback_node() -> Iterator[None]:
    """Within this block, ``ray.init(address="127.0.0.1:<port>")`` connects to a local head that listens on loopback
    only (started with :data:`SINGLE_NODE_ENV`) instead of resolving 127.0.0.1 to the machine's routable IP.

    Ray reads the variable once, at import, into ``ray_constants.ENABLE_RAY_CLUSTER``; the block sets that constant
    (and the variable, for child processes that this process starts meanwhile) and restores both afterwards.

    Example:
        >>> with loopback_node():
        ...     ray.init(address="127.0.0.1:6379")
    """
    from ray._private import ray_constants

    key = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    before, before_env = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(key)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[key] = "0"
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before
        if before_env is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before_env


def enable_token_auth() -> None:
    """Make this process present the cluster's auth token (``ray.init`` with an address does not by itself)."""
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def running_replicas(name: str, deployment: str = "ModelServer") -> int:
    """How many replicas of an application's deployment are running now (0 when unknown)."""
    details = app_details(name, deployment)["deployments"].get(deployment, {})
    return sum(1 for r in details.get("replicas", []) if r.get("state") == "RUNNING")


def head_actor(cls: type, name: str, namespace: str, **options: Any) -> Any:
    """A detached, named actor of ``cls`` on the head node: looked up, or started (no CPU) when none runs.

    For the cluster's single writers (key store, audit log), whose files live on the head. ``options`` are
    passed to ``.options()`` (e.g. ``max_concurrency``).
    """
    import ray

    head = {"node:__internal_head__": 0.001}
    return (
        ray.remote(cls)
        .options(  # type: ignore[attr-defined]
            name=name,
            namespace=namespace,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            resources=head,
            **options,
        )
        .remote()
    )

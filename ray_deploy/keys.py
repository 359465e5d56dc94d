"""API keys of the data plane: create, list, revoke, the project's default key, and the auth switch.

Every HTTP route except ``/v2/health/*`` needs ``Authorization: Bearer <key>``. Keys live hashed in the
cluster's key store (:mod:`ray_deploy.dataplane.keystore`); a secret is shown once, when created. The
project's default key (scope ``admin``) is created on first use in ``<RAY_DEPLOY_HOME>/api_key`` (mode 0600,
like Ray's own token) and registered with the cluster, so the Python API, magics, CLI and the Jupyter
server extension use it without any set-up.

Example:
    >>> secret = create_key("dashboard", deployments=["churn"], scopes=("predict",), rate_limit="100/s")
    >>> requests.post(url, json=body, headers={"Authorization": f"Bearer {secret}"})
    >>> revoke_key(secret.split("_")[1])     # refused on every replica within a few seconds
    >>> requests.get(f"{endpoint}/v2/models", headers=auth_headers())   # the project key
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from typing import Any

import pandas as pd

from ray_deploy.config import Settings
from ray_deploy.dataplane.guard import KEY_PREFIX, MAX_STALE_S, KeyRecord, digest_of, parse_rate, split_key
from ray_deploy.dataplane.keystore import PROJECT_KEY_FILE, project_key, project_record
from ray_deploy.dataplane.routes import SCOPES
from ray_deploy.errors import ConfigError, ModelNotFound

log = logging.getLogger(__name__)

REVOCATION_S = MAX_STALE_S
"""A revoked key stops working on every replica within about this many seconds."""

_registered: set[tuple[str, str]] = set()  # (home, key id) of default keys this process registered


def create_key(
    name: str,
    *,
    deployments: list[str] | None = None,
    scopes: tuple[str, ...] | list[str] = ("predict",),
    rate_limit: str | None = None,
    burst: int | None = None,
    expires_in_s: float | None = None,
) -> str:
    """Create an API key and return its secret (shown this once; only its digest is stored).

    Args:
        name: What the key is for, shown in :func:`list_keys` and the audit log.
        deployments: The deployments it may call; None for every one.
        scopes: Any of ``predict`` (infer, predict, feedback), ``explain``, ``read`` (metadata, stats, model
            list) and ``admin`` (everything).
        rate_limit: E.g. ``"100/s"`` or ``"600/min"``, across all replicas of a deployment; None for no limit.
        burst: Requests it may send at once before the rate applies (default: one second's worth).
        expires_in_s: Seconds until it stops working; None for never.
    """
    record, secret = _new_record(name, deployments, scopes, rate_limit, burst, expires_in_s)
    _call("add", record)
    _audit("key_create", record, after=_public(record))
    return secret


def list_keys() -> pd.DataFrame:
    """Every key (never a secret): key_id, name, scopes, deployments, rate_limit, created, expires, revoked."""
    rows = [_public(r) for r in _call("records")]
    columns = ["key_id", "name", "scopes", "deployments", "rate_limit", "created", "expires", "revoked"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("created", "expires", "revoked"):
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return frame


def revoke_key(key_id: str) -> None:
    """Revoke a key by its id (the part after ``rdk_``); every replica refuses it within :data:`REVOCATION_S`.

    Revoking the default key rotates it: the next use of :func:`default_key` creates a new one.
    """
    parts = split_key(key_id)  # a whole key works too
    key_id = parts[0] if parts else key_id
    before = _call("revoke", key_id)
    if before is None:
        known = [r.key_id for r in _call("records")]
        raise ModelNotFound(f"no API key with id {key_id!r}; known ids: {known} (see `ray-deploy keys list`)")
    _audit("key_revoke", before, before=_public(before), after={"revoked": True})


def default_key(settings: Settings | None = None) -> str:
    """The project's key (scope ``admin``): read from ``<home>/api_key``, created there on first use, and
    registered with the cluster's key store. A revoked default key is replaced by a new one."""
    settings = settings or Settings.from_env()
    path = settings.home / PROJECT_KEY_FILE
    key = project_key(path)
    record = project_record(key)
    if record is None:
        raise ConfigError(f"{path} does not hold a ray-deploy key (rdk_...); delete it to create a new one")
    if (str(settings.home), record.key_id) not in _registered:
        if _call("ensure", record) == "revoked":
            path.unlink()
            return default_key(settings)
        _apply_auth_setting()
        _registered.add((str(settings.home), record.key_id))
    return key


def auth_headers(settings: Settings | None = None) -> dict[str, str]:
    """``{"Authorization": "Bearer <the project key>"}``, for requests, httpx or tritonclient's ``headers=``."""
    return {"Authorization": f"Bearer {default_key(settings)}"}


def project_headers(settings: Settings) -> dict[str, str]:
    """The project key's header without connecting to Ray (for the Jupyter server, which is no Ray driver).

    The local head's key store registers the key of the project home it shares with the notebook when it
    starts; on a remote cluster a notebook or the CLI registers it (:func:`default_key`) on first use.
    """
    return {"Authorization": f"Bearer {project_key(settings.home / PROJECT_KEY_FILE)}"}


def set_auth(enabled: bool) -> None:
    """Turn API-key auth on or off for every deployment of the cluster (recorded in the audit log).

    Off means anyone who reaches the Serve port may call every model: only for a sealed network.
    """
    previous = bool(_call("set_enabled", enabled))
    if not enabled:
        log.warning("API-key auth is OFF: anyone who can reach the Serve endpoint may call every model")
    if previous != enabled:
        _audit_setting(previous, enabled)


def auth_enabled() -> bool:
    """Whether the data plane asks for API keys."""
    return bool(_call("enabled"))


# ---- helpers ---------------------------------------------------------------------------------------------------


KEY_COMMANDS = ("list", "create", "revoke", "default", "auth")


def key_command(
    command: str,
    target: str | None = None,
    *,
    deployments: str | None = None,
    scopes: str | None = None,
    rate_limit: str | None = None,
    burst: int | None = None,
    expires_in: float | None = None,
) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """The call a ``keys`` command line makes (``ray-deploy keys`` and ``%keys`` both): function name, args, kwargs.

    ``target`` is the key's name for ``create``, the key id for ``revoke`` and ``on|off|status`` for ``auth``;
    ``deployments`` and ``scopes`` are comma-separated.

    Example:
        >>> key_command("create", "ci", scopes="predict,read", rate_limit="10/s")
        ('create_key', ('ci',), {'deployments': None, 'scopes': ('predict', 'read'), 'rate_limit': '10/s', ...})
        >>> key_command("auth", "off")
        ('set_auth', (False,), {})
    """
    needs = {
        "create": "a name, e.g. `keys create ci --scopes predict`",
        "revoke": "a key id, e.g. `keys revoke 3f2a9c1b`; see `keys list`",
        "auth": "on, off or status, e.g. `keys auth status`",
    }
    if command not in KEY_COMMANDS:
        raise ConfigError(f"unknown keys command {command!r}; use one of {', '.join(KEY_COMMANDS)}")
    if command in needs and not target:
        raise ConfigError(f"keys {command} needs {needs[command]}")
    if command not in needs and target is not None:
        raise ConfigError(f"keys {command} takes no argument, got {target!r}")
    if command == "create":
        options = {
            "deployments": _csv(deployments),
            "scopes": tuple(_csv(scopes) or ("predict",)),
            "rate_limit": rate_limit,
            "burst": burst,
            "expires_in_s": expires_in,
        }
        return "create_key", (target,), options
    if command == "revoke":
        return "revoke_key", (target,), {}
    if command == "auth":
        if target not in ("on", "off", "status"):
            raise ConfigError(f"keys auth takes on, off or status, got {target!r}")
        return ("auth_enabled", (), {}) if target == "status" else ("set_auth", (target == "on",), {})
    return ("default_key", (), {}) if command == "default" else ("list_keys", (), {})


def _csv(text: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; None stays None."""
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _new_record(
    name: str,
    deployments: list[str] | None,
    scopes: tuple[str, ...] | list[str],
    rate_limit: str | None,
    burst: int | None,
    expires_in_s: float | None,
) -> tuple[KeyRecord, str]:
    """Validate the arguments of :func:`create_key` and make the record and the secret (pure but for randomness)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("a key needs a name (what it is for), e.g. create_key('dashboard')")
    unknown = sorted(set(scopes) - set(SCOPES))
    if isinstance(scopes, str) or not scopes or unknown:
        raise ConfigError(f"scopes must be a non-empty list of {list(SCOPES)}; got {scopes!r}")
    if deployments is not None and (
        isinstance(deployments, str) or not all(isinstance(d, str) and d for d in deployments)
    ):
        raise ConfigError(f"deployments must be a list of deployment names or None; got {deployments!r}")
    try:
        rate = parse_rate(rate_limit) if rate_limit is not None else None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if burst is not None and (rate is None or burst < 1):
        raise ConfigError("burst needs a rate_limit and must be at least 1")
    if expires_in_s is not None and expires_in_s <= 0:
        raise ConfigError(f"expires_in_s must be positive; got {expires_in_s}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    now = time.time()
    record = KeyRecord(
        key_id,
        name.strip(),
        digest_of(secret),
        tuple(dict.fromkeys(scopes)),
        tuple(deployments) if deployments is not None else None,
        rate,
        float(burst) if burst is not None else None,
        now,
        now + expires_in_s if expires_in_s is not None else None,
    )
    return record, f"{KEY_PREFIX}_{key_id}_{secret}"


def _public(record: KeyRecord) -> dict[str, Any]:
    """What may be shown of a key: everything but its digest."""
    return {
        "key_id": record.key_id,
        "name": record.name,
        "scopes": list(record.scopes),
        "deployments": list(record.deployments) if record.deployments is not None else None,
        "rate_limit": f"{record.rate_per_s:g}/s" if record.rate_per_s is not None else None,
        "created": record.created,
        "expires": record.expires_at,
        "revoked": record.revoked_at,
    }


def _apply_auth_setting() -> None:
    """``RAY_DEPLOY_AUTH=off`` (or ``on``) in the environment turns auth off (on) for the cluster."""
    wanted = os.environ.get("RAY_DEPLOY_AUTH", "").strip().lower()
    if wanted in ("off", "0", "false", "no"):
        set_auth(False)
    elif wanted in ("on", "1", "true", "yes"):
        set_auth(True)
    elif wanted:
        raise ConfigError(f"RAY_DEPLOY_AUTH={wanted!r}: use on or off")


def _call(method: str, *args: Any) -> Any:
    import ray

    from ray_deploy.cluster import connect
    from ray_deploy.dataplane.keystore import key_store

    connect()
    return ray.get(getattr(key_store(), method).remote(*args), timeout=60)


def _audit(action: str, record: KeyRecord, **change: Any) -> None:
    from ray_deploy import audit

    audit.record(action, deployment=None, evidence={"key_id": record.key_id, "name": record.name}, **change)


def _audit_setting(previous: bool, enabled: bool) -> None:
    from ray_deploy import audit

    audit.record("auth_setting", before={"auth": previous}, after={"auth": enabled})

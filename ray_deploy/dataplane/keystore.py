"""The key store: one detached actor on the head node that holds every API key (hashed) and the auth switch.

Replicas on every node fetch its table (:meth:`KeyStore.table`, only when it changed); the client API in
:mod:`ray_deploy.keys` adds and revokes keys through it. The table is saved as JSON (mode 0600, digests only,
never a secret) in the project home of the head (``<RAY_DEPLOY_HOME>/keys.json``), so keys survive a restart
of the actor or of the cluster.

Example:
    >>> store = key_store()                      # get or create the actor
    >>> ray.get(store.table.remote(-1)).enabled
    True
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from ray_deploy import serve_api
from ray_deploy.dataplane.guard import (
    KEY_PREFIX,
    KEYSTORE_NAME,
    KEYSTORE_NAMESPACE,
    KeyRecord,
    KeyTable,
    digest_of,
    split_key,
)

PROJECT_KEY_FILE = "api_key"


def project_key(path: Path) -> str:
    """The project key in ``path`` (``<home>/api_key``), created there (mode 0600) when missing.

    Creation is atomic: when two processes create it at once, both end up with the first one's key.
    """
    try:
        key = path.read_text().strip()
        if key:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = f"{KEY_PREFIX}_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip() or key
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    return key


def project_record(key: str) -> KeyRecord | None:
    """The stored form of a project key (scope ``admin``), or None for a malformed one."""
    parts = split_key(key)
    return KeyRecord(parts[0], "default", digest_of(parts[1]), ("admin",), created=time.time()) if parts else None


class KeyStore:
    """The key table, persisted to ``path`` (default: ``keys.json`` in the project home of the process it
    runs in, the head's); every change bumps the revision."""

    def __init__(self, path: str | None = None) -> None:
        from ray_deploy.config import Settings

        home = Settings.from_env().home
        self._path = Path(path) if path else home / "keys.json"
        self._keys: dict[str, KeyRecord] = {}
        self._enabled = True
        self._revision = 1
        if self._path.exists():
            saved = json.loads(self._path.read_text())
            self._enabled = bool(saved.get("enabled", True))
            for row in saved.get("keys", []):
                row["scopes"] = tuple(row["scopes"])
                row["deployments"] = tuple(row["deployments"]) if row.get("deployments") is not None else None
                self._keys[row["key_id"]] = KeyRecord(**row)
        if path is None:  # the head's project key works from the start (the local head shares the notebook's home)
            record = project_record(project_key(home / PROJECT_KEY_FILE))
            if record is not None:
                self.ensure(record)

    def table(self, revision: int) -> KeyTable | None:
        """The table, or None when the caller's ``revision`` is current."""
        if revision == self._revision:
            return None
        return KeyTable(self._enabled, dict(self._keys), self._revision)

    def add(self, record: KeyRecord) -> None:
        if record.key_id in self._keys:
            raise ValueError(f"key id {record.key_id} exists")
        self._keys[record.key_id] = record
        self._changed()

    def ensure(self, record: KeyRecord) -> str:
        """Add ``record`` unless its id is known: ``"added"``, ``"present"`` or ``"revoked"`` (left revoked)."""
        known = self._keys.get(record.key_id)
        if known is None:
            self.add(record)
            return "added"
        return "revoked" if known.revoked_at is not None else "present"

    def revoke(self, key_id: str) -> KeyRecord | None:
        """Revoke a key (kept, marked revoked); the record before, or None for an unknown id."""
        known = self._keys.get(key_id)
        if known is not None and known.revoked_at is None:
            self._keys[key_id] = dataclasses.replace(known, revoked_at=time.time())
            self._changed()
        return known

    def records(self) -> list[KeyRecord]:
        return sorted(self._keys.values(), key=lambda r: r.created)

    def set_enabled(self, enabled: bool) -> bool:
        """Turn auth on or off for every replica; returns the previous setting."""
        previous, self._enabled = self._enabled, enabled
        if previous != enabled:
            self._changed()
        return previous

    def enabled(self) -> bool:
        return self._enabled

    def _changed(self) -> None:
        self._revision += 1
        self._path.parent.mkdir(parents=True, exist_ok=True)
        rows = [dataclasses.asdict(r) for r in self._keys.values()]
        temporary = self._path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump({"enabled": self._enabled, "keys": rows}, file, indent=1)
        os.replace(temporary, self._path)


def key_store() -> Any:
    """The key store actor: looked up, or started on the head node (detached, no CPU) if none runs."""
    return serve_api.head_actor(KeyStore, KEYSTORE_NAME, KEYSTORE_NAMESPACE, max_restarts=-1)

"""The audit trail: an append-only, hash-chained log of every change to a deployment, and who made it.

Every change point (deploy, scale, delete, rollout start/promote/rollback/pause/resume/abort, approve, retrain
started/finished, auto-retrain enable/disable and its triggers, API key changes, auth settings) calls
:func:`record`. Each entry carries ``prev_hash`` and its own ``hash`` (SHA-256 of the canonical JSON of the entry
without ``hash``), so editing, deleting or reordering a line breaks the chain and :func:`verify_audit` names the
first broken index. The first entry's ``prev_hash`` is 64 zeros.

Storage is one JSON-lines file (``Settings.audit_path``, default ``<RAY_DEPLOY_HOME>/audit.jsonl``) with ONE
writer: the detached ``AuditLog`` actor (``ray-deploy-audit`` in namespace ``ray_deploy``, pinned to the head
node). It serializes appends and fsyncs each one; every surface (kernel, CLI, Jupyter server via Ray Jobs,
in-cluster controllers, retrain jobs) writes and reads through it. Reads re-read the file, so an edited file is
detected.

:func:`record` never fails the action it records: the action has already happened, so when the append fails
(no cluster, the actor died) it logs a warning and returns.

Example:
    >>> with acting_as("user:alice"):
    ...     record("scale", deployment="iris", before={"replicas": 1}, after={"replicas": 3})
    >>> audit_log("iris", since="1h")[["who", "action", "outcome"]].tail(1)
    >>> verify_audit().ok
    True
"""

from __future__ import annotations

import contextlib
import contextvars
import getpass
import hashlib
import html
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GENESIS = "0" * 64
ACTOR_NAME = "ray-deploy-audit"
NAMESPACE = "ray_deploy"
WHO_ENV = "RAY_DEPLOY_AUDIT_WHO"
"""Environment variable a Ray Job gets so its events name who asked for it (e.g. ``jupyter:alice``)."""

_identity: contextvars.ContextVar[str | None] = contextvars.ContextVar("ray_deploy_audit_identity", default=None)
_FIELDS = ("time", "time_iso", "who", "action", "deployment", "before", "after", "outcome", "evidence")


# --- identity ---------------------------------------------------------------------------------------------------


def current_identity() -> str:
    """Who acts now: the identity set by :func:`acting_as`, else the one a Ray Job was started for, else the
    OS user as ``user:<name>``.

    Example:
        >>> current_identity()
        'user:alice'
    """
    who = _identity.get()
    if who:
        return who
    env = os.environ.get(WHO_ENV)
    if env:
        return env
    try:
        return f"user:{getpass.getuser()}"
    except Exception:  # no login name (some containers): still an answer, never a failure
        return f"user:uid-{os.getuid()}" if hasattr(os, "getuid") else "user:unknown"


@contextlib.contextmanager
def acting_as(who: str) -> Iterator[str]:
    """Act as ``who`` (``jupyter:alice``, ``key:ab12cd``, ``controller:rollout``) inside the block.

    Example:
        >>> with acting_as("user:bob"):
        ...     get("churn").approve("4")
    """
    if not who or not who.strip():
        raise ValueError("acting_as needs a non-empty identity, e.g. 'user:bob'")
    token = _identity.set(who.strip())
    try:
        yield who.strip()
    finally:
        _identity.reset(token)


# --- the pure chain ---------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (numpy numbers, paths and the like become what JSON can hold)."""
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def make_event(
    action: str,
    *,
    deployment: str | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    outcome: str = "ok",
    evidence: Mapping[str, Any] | None = None,
    who: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """An audit event (not yet chained): time, who, action, deployment, before, after, outcome, evidence.

    Example:
        >>> make_event("scale", deployment="iris", who="user:a", now=0.0)["time_iso"]
        '1970-01-01T00:00:00+00:00'
    """
    if not action:
        raise ValueError("an audit event needs an action")
    t = time.time() if now is None else float(now)
    return _jsonable(
        {
            "time": t,
            "time_iso": datetime.fromtimestamp(t, UTC).isoformat(),
            "who": who or current_identity(),
            "action": action,
            "deployment": deployment,
            "before": dict(before or {}),
            "after": dict(after or {}),
            "outcome": outcome,
            "evidence": dict(evidence or {}),
        }
    )


def _canonical(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``entry`` without its ``hash`` field (``prev_hash`` included).

    Example:
        >>> len(entry_hash({"action": "deploy", "prev_hash": GENESIS}))
        64
    """
    return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def chain(prev_hash: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """The log entry of ``event`` after the entry whose hash is ``prev_hash`` (:data:`GENESIS` for the first).

    Example:
        >>> first = chain(GENESIS, make_event("deploy", deployment="iris", who="user:a", now=0.0))
        >>> first["prev_hash"] == GENESIS and first["hash"] == entry_hash(first)
        True
    """
    entry = {k: v for k, v in _jsonable(dict(event)).items() if k not in ("hash", "prev_hash")}
    entry["prev_hash"] = prev_hash
    entry["hash"] = entry_hash(entry)
    return entry


@dataclass(frozen=True)
class AuditVerification:
    """Whether the audit log's hash chain is intact.

    Attributes:
        ok: Every entry's hash matches its content and links to the entry before it.
        count: Entries read.
        broken_at: Index (from 0) of the first entry that does not verify, or None.
        reason: Why it does not verify ('' when ok).
    """

    ok: bool
    count: int
    broken_at: int | None = None
    reason: str = ""

    def __repr__(self) -> str:
        if self.ok:
            return f"AuditVerification(ok: {self.count} entries, hash chain intact)"
        return f"AuditVerification(BROKEN at entry {self.broken_at} of {self.count}: {self.reason})"

    def _repr_html_(self) -> str:
        if self.ok:
            return f"<span style='color:green'>&#10003; audit log: {self.count} entries, hash chain intact</span>"
        return (
            f"<span style='color:#b00'>&#10007; audit log tampered: entry {self.broken_at} of {self.count}: "
            f"{html.escape(self.reason)}</span>"
        )

    def to_dict(self) -> dict[str, Any]:
        """As a ``documents.AuditVerificationDocument`` dict."""
        return {"ok": self.ok, "count": self.count, "broken_at": self.broken_at, "reason": self.reason}


def verify_chain(entries: Iterable[Mapping[str, Any] | None]) -> AuditVerification:
    """Check the hash chain: each entry's ``hash`` is the hash of its content, and its ``prev_hash`` is the
    previous entry's ``hash`` (:data:`GENESIS` for the first). ``None`` stands for a line that is not JSON.

    Example:
        >>> a = chain(GENESIS, make_event("deploy", who="user:a", now=0.0))
        >>> b = chain(a["hash"], make_event("scale", who="user:a", now=1.0))
        >>> verify_chain([b, a])
        AuditVerification(BROKEN at entry 0 of 2: its prev_hash is not 64 zeros (...))
    """
    items = list(entries)
    prev = GENESIS
    for index, entry in enumerate(items):
        if entry is None or not isinstance(entry, Mapping):
            return AuditVerification(False, len(items), index, "the line is not a JSON object")
        if entry.get("prev_hash") != prev:
            if index == 0:
                reason = "its prev_hash is not 64 zeros (an entry before it was deleted, or entries were reordered)"
            else:
                reason = (
                    f"its prev_hash does not match entry {index - 1}'s hash "
                    "(an entry was deleted, inserted or reordered)"
                )
            return AuditVerification(False, len(items), index, reason)
        try:
            actual = entry_hash(entry)
        except ValueError as exc:
            return AuditVerification(False, len(items), index, f"the entry cannot be hashed: {exc}")
        if entry.get("hash") != actual:
            return AuditVerification(False, len(items), index, "its hash does not match its content (it was edited)")
        prev = str(entry["hash"])
    return AuditVerification(True, len(items))


_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|w)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "w": 604800}


def parse_since(since: float | int | datetime | timedelta | str | None, now: float | None = None) -> float | None:
    """``since`` as seconds since the epoch: epoch seconds, a datetime, a timedelta ago, ``"1h"``/``"30m"``/
    ``"2d"`` ago, or an ISO date/time; None for no bound.

    Raises:
        ConfigError: a string that is neither a duration nor an ISO time.

    Example:
        >>> parse_since("30m", now=3600.0)
        1800.0
    """
    from ray_deploy.errors import ConfigError

    now = time.time() if now is None else now
    if since is None:
        return None
    if isinstance(since, bool):
        raise ConfigError(f"since must be seconds, a datetime, a timedelta or a string like '1h', got {since!r}")
    if isinstance(since, (int, float)):
        return float(since)
    if isinstance(since, timedelta):
        return now - since.total_seconds()
    if isinstance(since, datetime):
        return (since if since.tzinfo else since.astimezone()).timestamp()
    with contextlib.suppress(ValueError):  # "1700000000": seconds since the epoch, as a query string sends it
        return float(str(since).strip())
    match = _SINCE.match(str(since))
    if match:
        return now - float(match.group(1)) * _UNIT_S[match.group(2).lower()]
    try:
        return parse_since(datetime.fromisoformat(str(since).strip()), now)
    except ValueError:
        raise ConfigError(
            f"since={since!r} is not understood; use e.g. '30m', '1h', '2d', an ISO time or seconds since the epoch"
        ) from None


def read_entries(path: Path) -> list[dict[str, Any] | None]:
    """Every line of the audit file as an entry (None for a line that is not a JSON object); [] without a file.

    Example:
        >>> len(read_entries(Settings.from_env().audit_path))
        12
    """
    if not path.exists():
        return []
    entries: list[dict[str, Any] | None] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        entries.append(value if isinstance(value, dict) else None)
    return entries


def select(
    entries: Iterable[Mapping[str, Any] | None], name: str | None = None, since: float | None = None
) -> list[dict[str, Any]]:
    """The readable entries of deployment ``name`` (all when None) at or after ``since``, oldest first.

    Example:
        >>> [e["action"] for e in select(entries, "iris")]
        ['deploy', 'scale']
    """
    return [
        dict(e)
        for e in entries
        if e is not None
        and (name is None or e.get("deployment") == name)
        and (since is None or float(e.get("time", 0)) >= since)
    ]


# --- the one writer ---------------------------------------------------------------------------------------------


class AuditLog:
    """The audit log's only writer (a detached actor on the head node): serialized, fsynced appends."""

    def __init__(self, path: str | None = None) -> None:
        from ray_deploy.config import Settings

        # by default the path of the process it runs in (the head's), not of whoever started it
        self.path = Path(path) if path else Settings.from_env().audit_path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._last = GENESIS
        for entry in reversed(read_entries(self.path)):
            if entry is not None and isinstance(entry.get("hash"), str):
                self._last = entry["hash"]
                break

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Chain ``event`` after the last entry, append it and fsync; returns the entry."""
        entry = chain(self._last, event)
        line = json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._last = entry["hash"]
        return entry

    def entries(self, name: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
        """The entries of ``name`` (all when None) since ``since``, read from the file now."""
        return select(read_entries(self.path), name, since)

    def verify(self) -> dict[str, Any]:
        """The chain check of the file as it is now (an ``AuditVerification`` dict)."""
        return verify_chain(read_entries(self.path)).to_dict()

    def where(self) -> str:
        """The file it writes."""
        return str(self.path)

    def trail(self, name: str | None = None, since: float | None = None, limit: int | None = 200) -> dict[str, Any]:
        """A ``documents.AuditTrail`` dict of the file as it is now (:func:`trail_document`)."""
        return trail_document(self.path, name, since, limit)


async def read_trail(name: str | None = None, since: float | None = None, limit: int | None = 200) -> dict[str, Any]:
    """The audit trail from the ``AuditLog`` actor, for code already in the cluster (the ``/v2`` server app's
    ``GET /v2/audit``, which the side panel reads): it works wherever the head is. An empty trail when nothing
    was ever recorded (no actor yet; this never creates it).

    Example:
        >>> (await read_trail("iris"))["verification"]["ok"]
        True
    """
    import ray

    try:
        actor = ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
    except ValueError:
        return {"deployment": name, "entries": [], "verification": verify_chain([]).to_dict()}
    return dict(await actor.trail.remote(name, since, limit))


def start() -> None:
    """Start the audit actor if it does not run yet, without waiting for it (``connect`` calls this).

    Example:
        >>> start()
    """
    try:
        _actor()
    except Exception:  # recording starts it again; a connect must not fail for the audit log
        log.warning("ray-deploy: could not start the audit actor", exc_info=True)


def _actor() -> Any:
    """The ``AuditLog`` actor, created on the head node when none runs (connects this process if needed)."""
    import ray

    from ray_deploy import serve_api

    if not ray.is_initialized():
        from ray_deploy.cluster import connect

        connect()
    return serve_api.head_actor(AuditLog, ACTOR_NAME, NAMESPACE, max_concurrency=1)


def record(
    action: str,
    *,
    deployment: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    outcome: str = "ok",
    evidence: dict[str, Any] | None = None,
    who: str | None = None,
) -> None:
    """Append one event to the audit log (``who`` defaults to :func:`current_identity`).

    Never raises: the action it records has already happened, so a failed append (no cluster, the audit actor
    unreachable) is logged as a warning instead.

    Example:
        >>> record("promote", deployment="churn", before={"version": "3"}, after={"version": "4"})
    """
    try:
        event = make_event(
            action,
            deployment=deployment,
            before=before,
            after=after,
            outcome=outcome,
            evidence=evidence,
            who=who,
        )
    except Exception:
        log.warning("ray-deploy: could not build the audit event %r of %r", action, deployment, exc_info=True)
        return
    try:
        import ray

        ray.get(_actor().append.remote(event), timeout=60)
    except Exception as exc:
        log.warning(
            "ray-deploy: the audit event %s of %s by %s was NOT recorded (%s: %s); the action itself happened",
            action,
            deployment,
            event["who"],
            type(exc).__name__,
            exc,
        )


def audit_entries(
    name: str | None = None, since: float | int | datetime | timedelta | str | None = None
) -> list[dict[str, Any]]:
    """The audit entries of ``name`` (all when None) since ``since``, oldest first, as dicts.

    Example:
        >>> audit_entries("iris", since="1h")[-1]["action"]
        'scale'
    """
    import ray

    bound = parse_since(since)
    return list(ray.get(_actor().entries.remote(name, bound), timeout=60))


def audit_log(name: str | None = None, since: float | int | datetime | timedelta | str | None = None) -> Any:
    """The audit trail as a DataFrame (oldest first): time, who, action, deployment, before, after, outcome,
    evidence, hash. ``since``: seconds since the epoch, a datetime, a timedelta, or ``"1h"``/``"30m"``/``"2d"``.

    Example:
        >>> audit_log("churn", since="1h")[["time", "who", "action", "outcome"]]
    """
    import pandas as pd

    rows = audit_entries(name, since)
    columns = [*_FIELDS, "prev_hash", "hash"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    return frame.drop(columns=["time_iso", "prev_hash"])


def verify_audit() -> AuditVerification:
    """Re-read the audit file and check its hash chain: an edited, deleted or reordered line breaks it.

    Example:
        >>> verify_audit()
        AuditVerification(ok: 42 entries, hash chain intact)
    """
    import ray

    doc = ray.get(_actor().verify.remote(), timeout=60)
    return AuditVerification(**doc)


def trail_document(
    path: Path, name: str | None = None, since: float | None = None, limit: int | None = 200
) -> dict[str, Any]:
    """An ``documents.AuditTrail`` dict read straight from the audit file (for readers that are not Ray drivers,
    such as the Jupyter server extension on the head node): the newest ``limit`` entries and the chain check.

    Example:
        >>> trail_document(Settings.from_env().audit_path, "iris")["verification"]["ok"]
        True
    """
    entries = read_entries(path)
    chosen = select(entries, name, since)
    if limit is not None:
        chosen = chosen[-limit:]
    return {
        "deployment": name,
        "entries": chosen,
        "verification": verify_chain(entries).to_dict(),
    }

"""The audit log's pure parts (hash chain, verification, since, identity), the approval rules with a fake clock,
and how the ``audit``/``keys``/``approve`` CLI commands and magics parse."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ray_deploy import audit, cli
from ray_deploy.audit import GENESIS, AuditLog, acting_as, chain, current_identity, make_event, verify_chain
from ray_deploy.config import GateSpec, RolloutSpec, Settings
from ray_deploy.documents import AuditEvent
from ray_deploy.errors import ConfigError
from ray_deploy.rollout import ApprovalRefused, VersionWindow, approve, decide, request_promotion, start_rollout


def _log(n: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    prev = GENESIS
    for i in range(n):
        event = make_event(
            "scale", deployment="iris", before={"replicas": i}, after={"replicas": i + 1}, who="u", now=i
        )
        entries.append(chain(prev, event))
        prev = entries[-1]["hash"]
    return entries


def test_a_chain_verifies_and_every_entry_is_an_audit_event_document() -> None:
    entries = _log(4)
    assert entries[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(entries, entries[1:], strict=False))
    check = verify_chain(entries)
    assert (check.ok, check.count, check.broken_at) == (True, 4, None)
    assert "4 entries, hash chain intact" in repr(check) and "intact" in check._repr_html_()
    for entry in entries:
        assert AuditEvent.model_validate(entry).model_dump(mode="json") == entry


def test_an_edited_entry_breaks_the_chain_at_its_index() -> None:
    entries = _log(4)
    entries[2] = {**entries[2], "after": {"replicas": 99}}
    check = verify_chain(entries)
    assert (check.ok, check.broken_at) == (False, 2) and "edited" in check.reason
    assert "BROKEN at entry 2 of 4" in repr(check)


def test_a_deleted_entry_breaks_the_chain_at_the_next_index() -> None:
    entries = _log(4)
    del entries[1]
    check = verify_chain(entries)
    assert (check.ok, check.broken_at) == (False, 1) and "entry 0's hash" in check.reason
    first_gone = verify_chain(_log(3)[1:])
    assert (first_gone.ok, first_gone.broken_at) == (False, 0) and "64 zeros" in first_gone.reason


def test_reordered_entries_break_the_chain() -> None:
    entries = _log(4)
    entries[1], entries[2] = entries[2], entries[1]
    check = verify_chain(entries)
    assert (check.ok, check.broken_at) == (False, 1)


def test_a_line_that_is_not_json_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in _log(2)) + "\n{not json\n")
    check = verify_chain(audit.read_entries(path))
    assert (check.ok, check.count, check.broken_at) == (False, 3, 2)


def test_the_writer_appends_after_the_last_hash_it_finds_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "audit.jsonl"
    first = AuditLog(str(path))
    first.append(make_event("deploy", deployment="iris", who="u", now=10.0))
    first.append(make_event("deploy", deployment="wine", who="u", now=20.0))
    again = AuditLog(str(path))  # a restarted actor continues the chain from the file
    again.append(make_event("scale", deployment="iris", who="u", now=30.0))
    assert again.verify()["ok"] and again.verify()["count"] == 3
    assert [e["action"] for e in again.entries("iris")] == ["deploy", "scale"]
    assert [e["time"] for e in again.entries(None, since=15.0)] == [20.0, 30.0]
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace('"deploy"', '"delete"')
    path.write_text("\n".join(lines) + "\n")
    assert again.verify() == {"ok": False, "count": 3, "broken_at": 0, "reason": again.verify()["reason"]}
    trail = audit.trail_document(path, "iris")
    assert trail["verification"]["broken_at"] == 0 and len(trail["entries"]) == 2


def test_since_accepts_durations_times_and_seconds() -> None:
    now = 10_000.0
    assert audit.parse_since("30m", now) == now - 1800
    assert audit.parse_since("1h", now) == now - 3600
    assert audit.parse_since("2d", now) == now - 172_800
    assert audit.parse_since(" 15 s ", now) == now - 15
    assert audit.parse_since(timedelta(minutes=1), now) == now - 60
    assert audit.parse_since(5.0, now) == 5.0
    assert audit.parse_since("1700000000", now) == 1_700_000_000.0
    assert audit.parse_since(datetime(2024, 1, 1, tzinfo=UTC), now) == 1_704_067_200.0
    assert audit.parse_since("2024-01-01T00:00:00+00:00", now) == 1_704_067_200.0
    assert audit.parse_since(None, now) is None
    with pytest.raises(ConfigError, match="since='soon' is not understood"):
        audit.parse_since("soon", now)


def test_identity_is_the_os_user_unless_acting_as_or_a_job_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(audit.WHO_ENV, raising=False)
    monkeypatch.setattr(audit.getpass, "getuser", lambda: "alice")
    assert current_identity() == "user:alice"
    with acting_as("jupyter:bob"):
        assert current_identity() == "jupyter:bob"
        assert make_event("scale", now=0.0)["who"] == "jupyter:bob"
    monkeypatch.setenv(audit.WHO_ENV, "jupyter:carol")  # a Ray Job started for carol
    assert current_identity() == "jupyter:carol"
    with pytest.raises(ValueError), acting_as(" "):
        pass


def test_record_never_fails_the_action_when_no_cluster_answers(caplog: pytest.LogCaptureFixture) -> None:
    audit.record("scale", deployment="iris", before={"replicas": 1}, after={"replicas": 2})  # ray.init fails here
    assert "was NOT recorded" in caplog.text and "the action itself happened" in caplog.text


def test_the_audit_path_defaults_to_home_and_the_variable_overrides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_DEPLOY_AUDIT_PATH", raising=False)
    settings = Settings.from_env()
    assert settings.audit_path == settings.home / "audit.jsonl"
    monkeypatch.setenv("RAY_DEPLOY_AUDIT_PATH", "/var/log/ray-deploy/audit.jsonl")
    assert Settings.from_env().audit_path == Path("/var/log/ray-deploy/audit.jsonl")
    assert Settings.from_env().to_env()["RAY_DEPLOY_AUDIT_PATH"] == "/var/log/ray-deploy/audit.jsonl"


# --- approvals ----------------------------------------------------------------------------------------------------


def _healthy(seed: int) -> VersionWindow:
    rng = random.Random(seed)
    w = VersionWindow()
    for i in range(100):
        w.add(200, 10.0 * rng.uniform(0.9, 1.1), [i % 2])
    return w


def _awaiting() -> Any:
    spec = RolloutSpec(steps=(0.5, 1.0), step_s=10, gates=GateSpec(min_requests=50, min_labels=30))
    state = start_rollout("r1", "canary", spec, "1", "2", 0.0, requires_approval=True, started_by="user:alice")
    decision, state = decide(state, _healthy(1), _healthy(2), 11.0)
    assert decision == "advance"
    return decide(state, VersionWindow(), _healthy(2), 22.0)


def test_the_last_canary_step_waits_for_a_second_persons_approval() -> None:
    decision, state = _awaiting()
    assert (decision, state.state, state.share) == ("await_approval", "awaiting_approval", 1.0)
    decision, state = decide(state, VersionWindow(), _healthy(2), 500.0)
    assert (decision, state.state) == ("wait", "awaiting_approval")  # it waits at its last step, however long
    with pytest.raises(ApprovalRefused, match=r"user:alice cannot approve the promotion of v2: user:alice started"):
        approve(state, 501.0, "user:alice")
    state = approve(state, 502.0, "user:bob")
    assert (state.approved, state.approved_by) == (True, "user:bob")
    decision, state = decide(state, VersionWindow(), _healthy(2), 503.0)
    assert (decision, state.state) == ("promote", "promoted")


def test_a_manual_promotion_waits_and_its_requester_cannot_approve_it() -> None:
    spec = RolloutSpec(steps=(0.1, 1.0))
    state = start_rollout("r1", "canary", spec, "1", "2", 0.0, requires_approval=True, started_by="user:alice")
    allowed, state = request_promotion(state, 5.0, "user:bob")
    assert (allowed, state.state, state.requested_by) == (False, "awaiting_approval", "user:bob")
    for who in ("user:alice", "user:bob"):
        with pytest.raises(ApprovalRefused) as refused:
            approve(state, 6.0, who)
        assert "user:alice (started it)" in str(refused.value) and "user:bob (asked to promote)" in str(refused.value)
    approved = approve(state, 7.0, "jupyter:carol")
    assert request_promotion(approved, 8.0, "user:bob")[0] is True
    without = start_rollout("r2", "canary", spec, "1", "2", 0.0, started_by="user:alice")
    assert request_promotion(without, 1.0, "user:alice") == (True, without)
    assert approve(without, 1.0, "user:alice").approved  # no approval policy: anyone may approve


def test_the_awaiting_message_names_who_may_not_approve() -> None:
    from ray_deploy.rollout import section

    _, state = _awaiting()
    message = section(state, VersionWindow(), VersionWindow(), 30.0)["message"]
    assert message == "step 2/2: 100% to v2; gates pass; awaiting approval by someone other than user:alice to promote"


# --- CLI and magics parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["keys", "list"], ("list_keys", (), {})),
        (["keys", "default"], ("default_key", (), {})),
        (["keys", "revoke", "3f2a"], ("revoke_key", ("3f2a",), {})),
        (
            ["keys", "create", "ci", "--deployments", "a,b", "--scopes", "predict,read", "--rate-limit", "100/s"],
            (
                "create_key",
                ("ci",),
                {
                    "deployments": ["a", "b"],
                    "scopes": ("predict", "read"),
                    "rate_limit": "100/s",
                    "burst": None,
                    "expires_in_s": None,
                },
            ),
        ),
        (
            ["keys", "create", "nb", "--expires-in", "3600"],
            (
                "create_key",
                ("nb",),
                {
                    "deployments": None,
                    "scopes": ("predict",),
                    "rate_limit": None,
                    "burst": None,
                    "expires_in_s": 3600.0,
                },
            ),
        ),
    ],
)
def test_cli_keys_commands_call_the_keys_api(argv: list[str], expected: Any) -> None:
    assert cli.keys_call(cli._parser().parse_args(argv)) == expected


def test_cli_audit_and_approve_parse() -> None:
    args = cli._parser().parse_args(["audit", "iris", "--since", "1h", "--verify", "--json"])
    assert (args.name, args.since, args.verify, args.json) == ("iris", "1h", True, True)
    assert cli._parser().parse_args(["audit"]).name is None
    approve_args = cli._parser().parse_args(["approve", "iris", "4"])
    assert (approve_args.name, approve_args.version) == ("iris", "4")


def test_magics_parse_audit_keys_and_approve(capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.magic_arguments import parse_argstring

    from jupyter_ext.magics import RayDeployMagics
    from ray_deploy.errors import ConfigError
    from ray_deploy.keys import key_command

    def keys_call(args: Any) -> Any:
        names = ("deployments", "scopes", "rate_limit", "burst", "expires_in")
        return key_command(args.command, args.target, **{n: getattr(args, n) for n in names})

    magics = RayDeployMagics(InteractiveShell.instance())
    args = parse_argstring(magics.audit, "iris --since 30m -o trail")
    assert (args.name, args.since, args.output) == ("iris", "30m", "trail")
    args = parse_argstring(magics.keys, "create ci --deployments iris --scopes predict,read --rate-limit 10/s")
    assert keys_call(args) == (
        "create_key",
        ("ci",),
        {
            "deployments": ["iris"],
            "scopes": ("predict", "read"),
            "rate_limit": "10/s",
            "burst": None,
            "expires_in_s": None,
        },
    )
    assert keys_call(parse_argstring(magics.keys, "auth off")) == ("set_auth", (False,), {})
    assert keys_call(parse_argstring(magics.keys, "auth status")) == ("auth_enabled", (), {})
    with pytest.raises(ConfigError, match="keys auth takes on, off or status"):
        keys_call(parse_argstring(magics.keys, "auth maybe"))
    with pytest.raises(ConfigError, match="keys list takes no argument"):
        keys_call(parse_argstring(magics.keys, "list extra"))
    assert keys_call(parse_argstring(magics.keys, "")) == ("list_keys", (), {})
    assert keys_call(parse_argstring(magics.keys, "revoke k1")) == ("revoke_key", ("k1",), {})
    with pytest.raises(ConfigError, match="keys revoke needs a key id"):
        keys_call(parse_argstring(magics.keys, "revoke"))
    args = parse_argstring(magics.approve, "iris 4")
    assert (args.name, args.version) == ("iris", "4")
    for magic, words in (
        ("audit", ["--since", "-o", "hash chain"]),
        ("keys", ["create", "revoke", "--scopes"]),
        ("approve", ["VERSION", "second person"]),
    ):
        InteractiveShell.instance().run_line_magic("load_ext", "jupyter_ext")
        capsys.readouterr()
        InteractiveShell.instance().run_cell(f"%{magic}?")
        out = capsys.readouterr().out
        assert all(w in out for w in words), (magic, out)

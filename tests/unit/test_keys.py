"""Key creation rules, the stored form of keys (digests only), the default key file and the key store's table."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ray_deploy.dataplane.guard import authorize, digest_of, split_key
from ray_deploy.dataplane.keystore import KeyStore, project_key
from ray_deploy.errors import ConfigError
from ray_deploy.keys import _new_record, _public


def test_a_new_key_is_stored_as_a_digest_and_authorizes_its_secret() -> None:
    record, secret = _new_record("ci", ["iris"], ("predict", "read"), "100/s", 20, 3600)
    key_id, raw = split_key(secret) or ("", "")
    assert key_id == record.key_id and record.digest == digest_of(raw) and raw not in repr(record)
    assert record.scopes == ("predict", "read") and record.deployments == ("iris",)
    assert record.rate_per_s == 100.0 and record.burst == 20.0
    assert record.expires_at is not None and record.expires_at - record.created == pytest.approx(3600)
    shown = _public(record)
    assert "digest" not in shown and shown["rate_limit"] == "100/s"


@pytest.mark.parametrize(
    "kwargs, says",
    [
        ({"name": ""}, "needs a name"),
        ({"scopes": ("predict", "root")}, "scopes must be"),
        ({"scopes": "predict"}, "scopes must be"),
        ({"scopes": ()}, "scopes must be"),
        ({"deployments": "iris"}, "deployments must be"),
        ({"rate_limit": "fast"}, "100/s"),
        ({"burst": 5}, "burst needs a rate_limit"),
        ({"expires_in_s": 0}, "expires_in_s must be positive"),
    ],
)
def test_bad_key_arguments_are_refused(kwargs: dict, says: str) -> None:
    args = {"name": "ci", "deployments": None, "scopes": ("predict",), "rate_limit": None, "burst": None}
    args |= {"expires_in_s": None} | kwargs
    with pytest.raises(ConfigError, match=says):
        _new_record(**args)


def test_the_default_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "home" / "api_key"
    key = project_key(path)
    assert split_key(key) is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert project_key(path) == key  # read back, not replaced


def test_the_heads_key_store_registers_the_project_key_of_its_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_DEPLOY_HOME", str(tmp_path))
    table = KeyStore().table(-1)
    assert table is not None
    key = (tmp_path / "api_key").read_text().strip()
    assert authorize(table, "admin", "any", f"Bearer {key}", now=0.0).name == "default"
    assert KeyStore().table(-1).keys.keys() == table.keys.keys()  # registered once, kept


def test_the_key_store_persists_digests_only_and_bumps_its_revision(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    store = KeyStore(str(path))
    first = store.table(-1)
    assert first is not None and first.enabled and not first.keys
    assert store.table(first.revision) is None
    record, secret = _new_record("ci", None, ("predict",), None, None, None)
    store.add(record)
    assert store.ensure(record) == "present"
    stored = path.read_text()
    assert secret.split("_", 2)[2] not in stored and record.digest in stored
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store.revoke(record.key_id)
    assert store.ensure(record) == "revoked"
    reloaded = KeyStore(str(path)).table(-1)
    assert reloaded is not None and reloaded.keys[record.key_id].revoked_at is not None
    with pytest.raises(Exception, match="not valid"):
        authorize(reloaded, "predict", "iris", f"Bearer {secret}", now=0.0)
    assert store.set_enabled(False) is True and not KeyStore(str(path)).enabled()
    assert json.loads(path.read_text())["enabled"] is False

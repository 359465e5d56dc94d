"""The traffic split: the share lands where asked, a sticky caller stays on its side, and growth is monotone."""

from __future__ import annotations

import random

import pytest

from ray_deploy.dataplane.split import choose, key_position

SHARES = (0.05, 0.25, 0.5)
N = 2_000
KEYS = [f"user-{i}" for i in range(N)]


@pytest.mark.parametrize("share", SHARES)
def test_draws_send_the_share_to_the_challenger(share: float) -> None:
    rng = random.Random(7)
    sent = sum(choose(share, None, rng.random()) for _ in range(N))
    assert abs(sent / N - share) <= 0.03


@pytest.mark.parametrize("share", SHARES)
def test_keys_send_the_share_to_the_challenger(share: float) -> None:
    sent = sum(choose(share, key, 0.0) for key in KEYS)
    assert abs(sent / N - share) <= 0.03


def test_a_key_always_lands_on_the_same_side_whatever_the_draw() -> None:
    rng = random.Random(3)
    for key in KEYS[:300]:
        sides = {choose(0.25, key, rng.random()) for _ in range(5)}
        assert len(sides) == 1, key


def test_a_caller_on_the_challenger_stays_there_as_the_share_grows() -> None:
    previous: set[str] = set()
    for share in (0.01, 0.05, 0.25, 0.5, 0.75, 0.99):
        current = {key for key in KEYS if choose(share, key, 0.99)}
        assert previous <= current
        assert len(current) > len(previous)
        previous = current


def test_no_share_sends_nothing_and_a_full_share_everything() -> None:
    assert not any(choose(0.0, key, 0.0) for key in KEYS[:200])
    assert not choose(0.0, None, 0.0)
    assert all(choose(1.0, key, 0.99) for key in KEYS[:200])
    assert choose(1.0, None, 0.999999)


def test_key_positions_are_stable_fractions_and_a_salt_reshuffles_callers() -> None:
    positions = [key_position(k) for k in KEYS]
    assert all(0.0 <= p < 1.0 for p in positions)
    assert key_position("user-1") == key_position("user-1")
    # Another rollout (salt) picks a different set of callers at the same share, at the same rate.
    plain = {k for k in KEYS if choose(0.25, k, 0.0)}
    salted = {k for k in KEYS if choose(0.25, k, 0.0, salt="rollout-2")}
    assert plain != salted
    assert abs(len(salted) / N - 0.25) <= 0.03

"""The relay of a rollout's requests to the challenger: grouping, lanes, failures and the bound on mirrored copies."""

from __future__ import annotations

import asyncio

import pytest

from ray_deploy.dataplane import relay as relay_module
from ray_deploy.dataplane.relay import Answer, Call, Relay


def _call(n: int, shadow_of: str | None = None) -> Call:
    return Call("predict", {"authorization": "Bearer k"}, f"{n}".encode(), "/v2/models/iris/predict", shadow_of)


class Challenger:
    """Answers each call with its body; each group waits until ``release`` is set (set at start: no wait)."""

    def __init__(self, fail: bool = False) -> None:
        self.groups: list[list[Call]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail = fail

    async def send(self, calls: list[Call]) -> list[Answer]:
        self.groups.append(calls)
        await self.release.wait()
        if self.fail:
            raise ConnectionError("the challenger's replica is gone")
        return [(200, call.body, {"x-shadow-of": str(call.shadow_of)}) for call in calls]


def test_a_lone_request_goes_at_once_and_later_ones_wait_to_go_together() -> None:
    async def story() -> None:
        challenger = Challenger()
        relay = Relay(challenger.send, lanes=1)
        assert await relay.forward(_call(0)) == (200, b"0", {"x-shadow-of": "None"})
        challenger.release.clear()
        first = asyncio.ensure_future(relay.forward(_call(1)))
        await asyncio.sleep(0.01)  # the first is in flight: the next five wait for it
        rest = [asyncio.ensure_future(relay.forward(_call(n))) for n in range(2, 7)]
        await asyncio.sleep(0.01)
        challenger.release.set()
        answers = await asyncio.gather(first, *rest)
        assert [body for _, body, _ in answers] == [f"{n}".encode() for n in range(1, 7)]
        assert [len(group) for group in challenger.groups] == [1, 1, 5]

    asyncio.run(story())


def test_each_lane_has_a_call_in_flight_of_its_own() -> None:
    async def story() -> None:
        challenger = Challenger()
        challenger.release.clear()
        relay = Relay(challenger.send, lanes=2)
        calls = [asyncio.ensure_future(relay.forward(_call(n))) for n in range(2)]
        await asyncio.sleep(0.01)
        assert [len(group) for group in challenger.groups] == [1, 1]  # two replicas busy, not one group of two
        challenger.release.set()
        assert [body for _, body, _ in await asyncio.gather(*calls)] == [b"0", b"1"]

    asyncio.run(story())


def test_a_failed_call_is_counted_and_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    async def story() -> None:
        challenger = Challenger(fail=True)
        relay = Relay(challenger.send)
        assert await relay.forward(_call(0)) is None  # the champion answers instead
        assert await relay.forward(_call(1)) is None
        assert relay.mirror(_call(2, shadow_of="req-2"))
        for _ in range(10):
            await asyncio.sleep(0)
        assert (relay.unanswered.total, relay.lost.total) == (2, 1)

    with caplog.at_level("WARNING", logger="ray.serve"):
        asyncio.run(story())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2  # one line per kind within WARN_EVERY_S, not one per request
    assert "did not answer" in lines[0] and "gone" in lines[0] and "mirrored request(s) lost" in lines[1]


def test_mirrored_copies_past_the_bound_are_dropped_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_module, "MAX_MIRRORED", 3)

    async def story() -> None:
        challenger = Challenger()
        challenger.release.clear()  # a challenger slower than the champion
        relay = Relay(challenger.send)
        taken = [relay.mirror(_call(n, shadow_of=f"req-{n}")) for n in range(5)]
        assert taken == [True, True, True, False, False] and relay.lost.total == 2
        challenger.release.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert sum(len(group) for group in challenger.groups) == 3
        assert all(call.shadow_of == f"req-{call.body.decode()}" for group in challenger.groups for call in group)
        assert relay.mirror(_call(5, shadow_of="req-5"))  # room again once the copies were delivered

    asyncio.run(story())


def test_a_relay_needs_a_lane() -> None:
    with pytest.raises(ValueError, match="at least one lane"):
        Relay(Challenger().send, lanes=0)

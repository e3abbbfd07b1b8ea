"""The in-process driver (benchmarks/inprocess.py) with several tasks calling the app at once.

Against the Redis store (a private redis-server, as ``python -m benchmarks`` runs it), whose
operations really wait on the network: the tasks must overlap, and no code or refresh token
may be sent twice. Asserts what happened to the requests, never a speed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.common import ASGIApp, Keys, Receive, Scope, Send
from benchmarks.env import Env
from benchmarks.inprocess import RoundTrips, measure
from benchmarks.scenarios import Scenario


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    e = Env()
    yield e
    e.close()


def counting(app: ASGIApp) -> tuple[ASGIApp, dict[str, int]]:
    """``app`` behind a wrapper that records the most calls in flight at once."""
    seen = {"now": 0, "peak": 0}

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        seen["now"] += 1
        seen["peak"] = max(seen["peak"], seen["now"])
        try:
            await app(scope, receive, send)
        finally:
            seen["now"] -= 1

    return wrapped, seen


@pytest.mark.parametrize("concurrency", [1, 16])
async def test_concurrent_calls_share_the_pool_without_reusing_a_refresh_token(env: Env, concurrency: int) -> None:
    built = Scenario("attesto", "refresh_token", "redis").build(env.store_url("redis"), Keys.generate())
    try:
        bodies = await built.bodies(300)
        app, seen = counting(built.app)
        # A long slice: it ends when the pool does, every body used once.
        sample, used = await measure(app, bodies, seconds=120, reusable=False, concurrency=concurrency)
    finally:
        await built.aclose()
    assert sample.first_failure is None
    assert (used, sample.ok, sample.failed) == (300, 300, 0)
    assert len(sample.latencies_ns) == 300
    assert seen["peak"] == concurrency
    assert sample.seconds > 0


async def test_a_reused_refresh_token_is_counted_as_failed(env: Env) -> None:
    # The check above means something: the same token twice is refused (rotation).
    built = Scenario("attesto", "refresh_token", "redis").build(env.store_url("redis"), Keys.generate())
    try:
        bodies = await built.bodies(1)
        sample, used = await measure(built.app, bodies * 4, seconds=120, reusable=False, concurrency=4)
    finally:
        await built.aclose()
    assert (used, sample.ok, sample.failed) == (4, 1, 3)
    assert sample.first_failure is not None
    assert sample.first_failure.startswith("400")


async def test_bare_round_trips_to_redis_are_timed_one_at_a_time(env: Env) -> None:
    trips = RoundTrips("127.0.0.1", env.redis.port)
    await trips.sample(20)
    await trips.sample(30)
    assert len(trips.latencies_ns) == 50
    assert all(ns > 0 for ns in trips.latencies_ns)


async def test_a_round_trip_that_does_not_answer_pong_fails(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    trips = RoundTrips("127.0.0.1", env.redis.port)
    monkeypatch.setattr("benchmarks.inprocess._PING", b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n")
    with pytest.raises(AssertionError, match="answered PING"):
        await trips.sample(1)

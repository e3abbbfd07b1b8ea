"""The measured cap on one Redis rotation at a time (benchmarks/rotation_cap.py).

Against a private redis-server, as ``python -m benchmarks`` runs it. Asserts what the probe
did (two bare round trips a rotation, or one, every rotation real), never a speed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.common import Keys
from benchmarks.env import Env
from benchmarks.inprocess import call
from benchmarks.rotation_cap import MemoryBehindRoundTrips, RedisProbes, RotationCap


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    e = Env()
    yield e
    e.close()


async def test_each_rotation_waits_for_two_bare_round_trips_and_really_rotates(env: Env) -> None:
    cap = RotationCap(Keys.generate(), "127.0.0.1", env.redis.port)
    await cap.sample(20)
    await cap.sample(10)
    assert len(cap.latencies_ns) == 30
    assert cap.store.round_trips == 60
    # Every token presented was rotated (marked, its successor stored), as on the memory store.
    rotated = [r for r in cap.store._refresh.values() if r.rotated_at is not None]
    assert len(rotated) == 30
    assert cap.store.stream is None  # each sample closes its connection


async def test_behind_one_round_trip_only_the_compare_and_set_waits(env: Env) -> None:
    cap = RotationCap(Keys.generate(), "127.0.0.1", env.redis.port, per_rotation=1)
    await cap.sample(12)
    assert len(cap.latencies_ns) == 12
    assert cap.store.round_trips == 12
    assert len([r for r in cap.store._refresh.values() if r.rotated_at is not None]) == 12
    # Reading alone waits for nothing; spending waits for its round trip.
    assert await cap.store.get_refresh("family", "hash") is None
    assert cap.store.round_trips == 12
    with pytest.raises(ValueError, match="one or two round trips"):
        MemoryBehindRoundTrips(per_rotation=3)


async def test_a_rotation_without_a_connection_to_redis_fails(env: Env) -> None:
    cap = RotationCap(Keys.generate(), "127.0.0.1", env.redis.port)
    with pytest.raises(RuntimeError, match="no stream to Redis"):
        await cap.store.get_refresh("family", "hash")
    # Through the app, a store failure is an answer, never a silent success.
    body = b"grant_type=refresh_token&refresh_token=" + b"A" * 22 + b"." + b"B" * 43
    status, _ = await call(cap.app, body)
    assert status != 200


async def test_a_round_trip_that_does_not_answer_pong_fails_the_sample(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = RotationCap(Keys.generate(), "127.0.0.1", env.redis.port)
    monkeypatch.setattr("benchmarks.inprocess._PING", b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n")
    # The store's failure reaches the app, which answers 500 (logged); the sample fails on it.
    with pytest.raises(AssertionError, match="rotation behind round trips failed: 500"):
        await cap.sample(1)
    assert cap.store.stream is None


async def test_the_probes_give_the_runs_three_redis_entries(env: Env) -> None:
    probes = RedisProbes(Keys.generate(), "127.0.0.1", env.redis.port)
    await probes.sample(5)
    await probes.sample(5)
    results = probes.results()
    assert sorted(results) == ["redis_rotation_cap", "redis_rotation_cap_one_trip", "redis_round_trip"]
    for entry in results.values():
        assert entry["samples"] == 10
        assert entry["p99_ms"] >= entry["p50_ms"] > 0
    assert (probes.cap.store.round_trips, probes.cap_one.store.round_trips) == (20, 10)

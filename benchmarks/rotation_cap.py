"""What one refresh rotation at a time can reach through Redis at best, measured.

A rotation waits for two store round trips (``get_refresh``, then the compare-and-set
``rotate_refresh``: attesto_asgi/core/grants/refresh_token.py). ``MemoryBehindRoundTrips``
is the memory store with one bare round trip to the run's Redis (``round_trip``: a RESP
``PING`` on a plain asyncio stream) before each of those two operations: the store's own
work is the memory store's and the client's is none, so no store that makes the two round
trips answers faster. ``RotationCap`` times attesto's rotation on it, one call at a time,
between the in-process rounds. Its p50 against the memory store's own is the cap the report
shows beside the c=1 Redis target: it counts what adding two waits on the network does to
the rest of the request (the event loop sleeps and wakes twice), which the sum "memory p50
+ 2 bare round trips" leaves out.

With ``per_rotation=1`` only the compare-and-set waits: the cap of a store contract that
read, checked and spent a refresh token in one round trip, which attesto's does not do
(the grant's checks and the host's hooks run between the read and the spend, so a denied
request changes nothing). It shows how far even that would go.
"""

from __future__ import annotations

import asyncio
import time

from attesto_asgi import AttestoMiddleware
from attesto_asgi.memory import MemoryStore
from attesto_asgi.model import RefreshRecord
from attesto_asgi.store import RotateResult

from .attesto import make_config, not_found, put_refresh_tokens
from .common import Keys, refresh_body
from .inprocess import RoundTrips, call, latency_ms, round_trip

__all__ = ["MemoryBehindRoundTrips", "RedisProbes", "RotationCap"]


class MemoryBehindRoundTrips(MemoryStore):
    """The memory store; ``rotate_refresh`` and, with ``per_rotation=2``, ``get_refresh``
    each wait for one bare round trip on ``stream`` first. ``round_trips`` counts them."""

    def __init__(self, *, per_rotation: int = 2) -> None:
        if per_rotation not in (1, 2):
            raise ValueError("a rotation makes one or two round trips")
        super().__init__(warn=False)
        self.per_rotation = per_rotation
        self.stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.round_trips = 0

    async def _round_trip(self) -> None:
        if self.stream is None:
            raise RuntimeError("no stream to Redis: RotationCap.sample connects one")
        await round_trip(*self.stream)
        self.round_trips += 1

    async def get_refresh(self, family_id: str, token_hash: str) -> RefreshRecord | None:
        if self.per_rotation == 2:
            await self._round_trip()
        return await super().get_refresh(family_id, token_hash)

    async def rotate_refresh(
        self, family_id: str, old_hash: str, successor: RefreshRecord, sealed: bytes | None
    ) -> RotateResult:
        await self._round_trip()
        return await super().rotate_refresh(family_id, old_hash, successor, sealed)


class RotationCap:
    """attesto's refresh rotation on ``MemoryBehindRoundTrips``, timed one call at a time."""

    def __init__(self, keys: Keys, host: str, port: int, *, per_rotation: int = 2) -> None:
        self.host = host
        self.port = port
        self.store = MemoryBehindRoundTrips(per_rotation=per_rotation)
        self.config = make_config(keys, self.store)
        self.app = AttestoMiddleware(not_found, config=self.config)
        self.latencies_ns: list[int] = []

    async def sample(self, n: int = 200) -> None:
        """``n`` rotations of fresh refresh tokens (minted first, not timed), on a fresh
        connection to Redis; every one must answer 200."""
        bodies = [refresh_body(t) for t in await put_refresh_tokens(self.config, n)]
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.store.stream = (reader, writer)
        try:
            clock = time.perf_counter_ns
            for body in bodies:
                t0 = clock()
                status, content = await call(self.app, body)
                self.latencies_ns.append(clock() - t0)
                if status != 200:
                    raise AssertionError(f"rotation behind round trips failed: {status} {content[:200]!r}")
        finally:
            self.store.stream = None
            writer.close()
            await writer.wait_closed()


class RedisProbes:
    """Sampled after every in-process round when Redis is in the run: bare round trips to it
    (``RoundTrips``), and attesto's rotation behind two of them and behind one
    (``RotationCap``)."""

    def __init__(self, keys: Keys, host: str, port: int) -> None:
        self.trips = RoundTrips(host, port)
        self.cap = RotationCap(keys, host, port)
        self.cap_one = RotationCap(keys, host, port, per_rotation=1)

    async def sample(self, n: int = 200) -> None:
        await self.trips.sample(n)
        await self.cap.sample(n)
        await self.cap_one.sample(n)

    def results(self) -> dict[str, dict[str, float]]:
        """The run's ``redis_round_trip``, ``redis_rotation_cap`` (two round trips) and
        ``redis_rotation_cap_one_trip`` entries (p50, p99, samples)."""
        return {
            name: {**latency_ms(latencies), "samples": len(latencies)}
            for name, latencies in (
                ("redis_round_trip", self.trips.latencies_ns),
                ("redis_rotation_cap", self.cap.latencies_ns),
                ("redis_rotation_cap_one_trip", self.cap_one.latencies_ns),
            )
        }

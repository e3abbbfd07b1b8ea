"""The Redis store under many concurrent requests in one worker: requests wait for a pooled
connection instead of failing (redis-py's default pool raised MaxConnectionsError past 100
connections, which surfaced as 503 temporarily_unavailable under load)."""

from __future__ import annotations

import asyncio
import time

from attesto_asgi_redis import RedisStore

from attesto_asgi._secrets import new_id
from attesto_asgi.testing.store_contract import LONG, make_refresh
from tests.stores.redis_server import RedisServer


async def test_more_operations_in_flight_than_connections_all_succeed(redis_server: RedisServer) -> None:
    store = RedisStore(f"{redis_server.url}/0?prefix=t{new_id()}&max_connections=8")
    try:
        records = [make_refresh(time.time(), ttl=LONG) for _ in range(300)]
        stored = await asyncio.gather(*(store.put_refresh(r) for r in records))
        assert all(stored)
        found = await asyncio.gather(*(store.get_refresh(r.family_id, r.token_hash) for r in records))
        assert [f.token_hash if f else None for f in found] == [r.token_hash for r in records]
        assert store.client.connection_pool.max_connections == 8
    finally:
        await store.aclose()


async def test_default_pool_is_bounded(redis_server: RedisServer) -> None:
    store = RedisStore(f"{redis_server.url}/0?prefix=t{new_id()}")
    try:
        assert store.client.connection_pool.max_connections == 64
        assert await store.family_revoked(new_id()) is False
    finally:
        await store.aclose()

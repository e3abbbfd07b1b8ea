"""The Redis store under many concurrent requests in one worker: requests wait for a pooled
connection instead of failing (redis-py's default pool raised MaxConnectionsError past 100
connections, which surfaced as 503 temporarily_unavailable under load)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from attesto_asgi_redis import RedisStore

from attesto_asgi._secrets import new_id
from attesto_asgi.errors import StoreUnavailable
from attesto_asgi.testing.store_contract import LONG, make_refresh
from tests.helpers import free_port
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


async def _connection_id(store: RedisStore) -> int:
    reply: int = await store._run("CLIENT", "ID")
    return reply


async def test_a_pipeline_keeps_its_connection_for_the_next_one(redis_server: RedisServer) -> None:
    # Taking a connection from the pool and giving it back cost ~45 µs a pipeline, a quarter
    # of a round trip when requests come one at a time: a sender keeps it instead.
    store = RedisStore(f"{redis_server.url}/0?prefix=t{new_id()}")
    admin = aioredis.Redis.from_url(f"{redis_server.url}/0")
    try:
        pool: Any = store.client.connection_pool
        taken = 0
        take = pool.get_connection

        async def counted() -> object:
            nonlocal taken
            taken += 1
            return await take()

        pool.get_connection = counted
        first = await _connection_id(store)
        for _ in range(5):
            assert await store.family_revoked(new_id()) is False
        assert await _connection_id(store) == first
        assert taken == 1
        await store.aclose()
        # Closed: the kept connection went back to the pool, which closed it (Redis may list
        # it until it has read the close: asked again for up to a second).
        for _ in range(100):
            if first not in {int(c["id"]) for c in await admin.client_list()}:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError(f"connection {first} still open after aclose()")
    finally:
        await admin.aclose()
        await store.aclose()


async def test_a_kept_connection_the_server_closed_is_replaced_once_its_close_is_read(
    redis_server: RedisServer,
) -> None:
    # A connection the server closed (idle timeout, CLIENT KILL, a restart) and whose close
    # the event loop has read goes back to the pool, as a pooled one would: the next
    # operation, even one never sent twice, runs on a fresh connection. (One sent before the
    # close is read fails: test_store_redis_pipeline, the restart tests.)
    store = RedisStore(f"{redis_server.url}/0?prefix=t{new_id()}")
    admin = aioredis.Redis.from_url(f"{redis_server.url}/0")
    try:
        kept = await _connection_id(store)
        assert await admin.client_kill_filter(_id=str(kept)) == 1
        [conn] = store._idle
        async with asyncio.timeout(10):
            assert await conn._reader.read(1) == b""  # the close, read
        assert await store.claim_once(new_id(), 60) is True  # SET NX: never sent twice
        assert await _connection_id(store) != kept
    finally:
        await admin.aclose()
        await store.aclose()


async def test_a_readonly_reply_drops_the_connection_so_a_failover_reconnects(private_redis: RedisServer) -> None:
    # After a failover the old primary answers writes with READONLY: that write fails
    # (StoreUnavailable: it did not apply), and the connection is not kept, so the next
    # pipeline connects again (where a failover moves the address, to the new primary).
    store = RedisStore(f"{private_redis.url}/0?prefix=t{new_id()}&socket_timeout=2")
    admin = aioredis.Redis.from_url(f"{private_redis.url}/0")
    try:
        first = await _connection_id(store)
        await admin.replicaof("127.0.0.1", str(free_port()))  # a replica of nothing: read-only
        with pytest.raises(StoreUnavailable):
            await store.claim_once(new_id(), 60)
        assert store._idle == []
        await admin.replicaof("NO", "ONE")  # promoted (here, the same address)
        assert await store.claim_once(new_id(), 60) is True
        assert await _connection_id(store) != first
    finally:
        await admin.aclose()
        await store.aclose()

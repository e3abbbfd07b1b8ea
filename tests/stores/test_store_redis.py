"""The Redis store: the conformance suite against a private redis-server (standalone and a
one-node cluster that enforces hash slots), plus what only Redis has (key layout, TTLs,
NOSCRIPT, outages)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from attesto_asgi_redis import RedisStore, parse_redis_url
from redis.crc import key_slot

from attesto_asgi import StoreUnavailable, open_store
from attesto_asgi._secrets import new_id
from attesto_asgi.model import CodeReused, Rotated
from attesto_asgi.store import Store
from attesto_asgi.testing import StoreContract, StoreFactory
from attesto_asgi.testing.store_contract import LONG, make_code, make_refresh, successor_of
from tests.stores.redis_server import RedisServer


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


async def _raw_items(client: aioredis.Redis, prefix: str) -> dict[bytes, tuple[bytes, int]]:
    """Every key of this prefix: its raw value bytes and its PTTL."""
    out: dict[bytes, tuple[bytes, int]] = {}
    async for key in client.scan_iter(match=f"*{prefix}*", count=1000):
        kind = await client.type(key)
        if kind == b"hash":
            fields = await client.hgetall(key)
            value = b"\x00".join(_b(k) + b"=" + _b(v) for k, v in fields.items())
        else:
            value = _b(await client.get(key) or b"")
        out[key] = (value, await client.pttl(key))
    return out


class _RedisContract(StoreContract):
    controllable_clock = False  # Redis keeps time: real short TTLs
    short_ttl = 0.3
    slack = 0.1

    server_url: str

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        url = f"{self.server_url}/0?prefix=t{new_id()}"
        return lambda clock: RedisStore(url, clock=clock)

    async def dump_raw(self, store: Store) -> bytes:
        assert isinstance(store, RedisStore)
        items = await _raw_items(store.client, store.prefix)
        return b"\n".join(k + b" " + v for k, (v, _) in items.items())


class TestRedisStandalone(_RedisContract):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.server_url = redis_server.url


class TestRedisClusterSlots(_RedisContract):
    """Same suite on a cluster-mode node: a CROSSSLOT key layout would fail here."""

    @pytest.fixture(autouse=True)
    def _server(self, redis_cluster_node: RedisServer) -> None:
        self.server_url = redis_cluster_node.url


# -------------------------------------------------------------------- URL and discovery


def test_url_prefix_is_ours_the_rest_is_redis_py() -> None:
    assert parse_redis_url("redis://127.0.0.1:6379/0?prefix=auth&socket_timeout=3") == (
        "redis://127.0.0.1:6379/0?socket_timeout=3",
        "auth",
    )
    assert parse_redis_url("rediss://h:6380/1") == ("rediss://h:6380/1", "attesto")


@pytest.mark.parametrize("url", ["redis://h/0?prefix=", "redis://h/0?prefix=a{b}", "redis://h/0?prefix=a*", "http://h"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_redis_url(url)


async def test_open_store_redis_and_rediss(redis_server: RedisServer) -> None:
    store = open_store(f"{redis_server.url}/0?prefix=p{new_id()}&socket_timeout=3")
    tls = open_store("rediss://127.0.0.1:1/0?prefix=x")
    try:
        assert isinstance(store, RedisStore)
        assert isinstance(tls, RedisStore)
        assert tls.client.connection_pool.connection_class.__name__ == "SSLConnection"
        assert store.client.connection_pool.connection_kwargs["socket_timeout"] == 3.0
        assert await store.claim_once("k", 10) is True
    finally:
        await store.aclose()
        await tls.aclose()


# -------------------------------------------------------------------- layout and TTLs


async def _workload(store: RedisStore) -> str:
    now = time.time()
    fam = new_id()
    code = make_code(now, family_id=fam)
    await store.put_code(code)
    await store.take_code(code.code_hash)
    rt = make_refresh(now, family_id=fam)
    await store.put_refresh(rt)
    succ = successor_of(rt, now)
    await store.rotate_refresh(fam, rt.token_hash, succ, b"sealed")
    await store.revoke_access_token(new_id(), now + 900)
    await store.claim_once("jti-" + new_id(), 300)
    await store.revoke_family(fam, now + LONG)
    return fam


async def test_every_key_has_a_ttl_and_a_family_shares_one_slot(redis_store: RedisStore) -> None:
    fam = await _workload(redis_store)
    items = await _raw_items(redis_store.client, redis_store.prefix)
    # tombstone, two refresh tokens, revoked marker, revoked jti, claim: issuing an access
    # token writes nothing.
    assert len(items) == 6
    for key, (_, pttl) in items.items():
        assert pttl > 0, f"{key!r} has no TTL"
    family_keys = [k for k in items if fam.encode() in k and b":code:" not in k]
    # two refresh tokens and the revoked marker, all in the family's slot (Redis Cluster).
    assert len(family_keys) == 3
    assert len({key_slot(k) for k in family_keys}) == 1


async def test_ttl_follows_the_record_expiry(redis_store: RedisStore) -> None:
    now = time.time()
    rt = make_refresh(now, ttl=120)
    await redis_store.put_refresh(rt)
    code = make_code(now, ttl=60, reuse_margin=240)
    await redis_store.put_code(code)
    items = await _raw_items(redis_store.client, redis_store.prefix)
    ttls = {k: p for k, (_, p) in items.items()}
    rt_key = next(k for k in ttls if rt.token_hash.encode() in k)
    code_key = next(k for k in ttls if code.code_hash.encode() in k)
    assert 118_000 < ttls[rt_key] <= 120_000
    assert 58_000 < ttls[code_key] <= 60_000
    # Taking the code turns it into a tombstone that lives until reuse_detect_until.
    await redis_store.take_code(code.code_hash)
    assert 298_000 < await redis_store.client.pttl(code_key) <= 300_000
    assert b"r" not in await redis_store.client.hkeys(code_key)  # the record itself is gone


async def test_scripts_reload_after_script_flush(redis_store: RedisStore) -> None:
    now = time.time()
    rt = make_refresh(now)
    await redis_store.put_refresh(rt)
    await redis_store.client.script_flush()  # what a Redis restart does to the script cache
    assert await redis_store.rotate_refresh(rt.family_id, rt.token_hash, successor_of(rt, now), None) == Rotated(
        record=rt
    )


# -------------------------------------------------------------------- outages


async def test_outage_is_store_unavailable_and_the_store_reconnects(private_redis: RedisServer) -> None:
    store = RedisStore(f"{private_redis.url}/0?prefix=t{new_id()}&socket_timeout=1")
    try:
        now = time.time()
        code = make_code(now)
        await store.put_code(code)
        # Several pooled connections exist when the server goes away.
        await asyncio.gather(*(store.family_revoked(new_id()) for _ in range(5)))
        private_redis.stop()
        for call in (
            store.take_code(code.code_hash),
            store.claim_once("k", 10),
            store.get_refresh("f", "h"),
            store.put_refresh(make_refresh(now)),
            store.revoke_family("f", now + 60),
            store.access_token_revoked("j", None),
            store.access_token_revoked("j", "f"),
        ):
            with pytest.raises(StoreUnavailable):
                await call
        private_redis.start()  # same port, empty (no persistence): a new server
        # No process restart: the same store serves again (first call on a fresh connection).
        code2 = make_code(time.time())
        await store.put_code(code2)
        assert await store.take_code(code2.code_hash) == code2
        assert isinstance(await store.take_code(code2.code_hash), CodeReused)
        assert await store.claim_once("k", 10) is True
    finally:
        await store.aclose()

"""The endpoints' refusal properties (tests/endpoint_properties.py) on the real backends: a
request carrying nothing ever issued changes nothing in a SQLite file or in Redis, whatever
it is answered. Each store's whole content is read back after every request."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from attesto_asgi_redis import RedisStore
from attesto_asgi_sqlite import SQLiteOptions, SQLiteStore

from attesto_asgi import Config
from attesto_asgi._secrets import new_id
from attesto_asgi.store import Store
from tests.endpoint_properties import ENDPOINTS, run_property
from tests.helpers import FakeClock
from tests.stores.redis_server import RedisServer

EXAMPLES = 150


async def sqlite_state(store: Store) -> object:
    """Every row of every table, read on a connection of its own (what is committed)."""
    assert isinstance(store, SQLiteStore)
    with sqlite3.connect(store.path) as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        state = {t: sorted(db.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables}
    assert any(state.values())
    return state


async def redis_state(store: Store) -> object:
    """Every key under the store's prefix: its type, value and expiry."""
    assert isinstance(store, RedisStore)
    client = store.client
    state: dict[bytes, tuple[object, ...]] = {}
    async for key in client.scan_iter(match=f"*{store.prefix}*", count=1000):
        kind = await client.type(key)
        value = await (client.hgetall(key) if kind == b"hash" else client.get(key))
        state[key] = (kind, value, await client.pexpiretime(key))
    assert state
    return state


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_sqlite_is_unchanged_by_requests_carrying_nothing_issued(
    make_config: Callable[..., Config], clock: FakeClock, tmp_path: Path, endpoint: str
) -> None:
    def open_store() -> Store:
        return SQLiteStore(SQLiteOptions(path=str(tmp_path / "attesto.db")), clock=clock)

    run_property(make_config, clock, ENDPOINTS[endpoint], open_store, sqlite_state, EXAMPLES)


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_redis_is_unchanged_by_requests_carrying_nothing_issued(
    make_config: Callable[..., Config], clock: FakeClock, redis_server: RedisServer, endpoint: str
) -> None:
    def open_store() -> Store:
        return RedisStore(f"{redis_server.url}/0?prefix=t{new_id()}", clock=clock)

    run_property(make_config, clock, ENDPOINTS[endpoint], open_store, redis_state, EXAMPLES)

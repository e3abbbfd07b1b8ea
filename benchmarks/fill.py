"""Bulk loading of refresh tokens for the growth stage.

10^6 tokens through ``put_refresh`` one at a time would take longer than the whole run
(each SQLite put is a durable transaction, each Redis put a round trip), so for the two
built-in durable backends the rows are written the way ``put_refresh`` writes them (the
backend's own statement, script and encoding), but batched: one SQLite transaction, Redis
pipelines. The first record goes through ``put_refresh`` itself so the store is connected
and migrated by its own code. Any other store gets concurrent ``put_refresh`` calls.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from attesto_asgi.model import RefreshRecord
from attesto_asgi.store import Store

__all__ = ["fill_refresh"]


async def fill_refresh(store: Store, records: Sequence[RefreshRecord]) -> None:
    if not records:
        return
    if not await store.put_refresh(records[0]):
        raise RuntimeError("refresh token refused by the store")
    rest = records[1:]
    module = type(store).__module__
    if module.startswith("attesto_asgi_sqlite"):
        await asyncio.to_thread(_fill_sqlite, store, rest)
    elif module.startswith("attesto_asgi_redis"):
        await _fill_redis(store, rest)
    else:
        for i in range(0, len(rest), 64):
            stored = await asyncio.gather(*(store.put_refresh(r) for r in rest[i : i + 64]))
            if not all(stored):
                raise RuntimeError("refresh token refused by the store")


def _fill_sqlite(store: Any, records: Sequence[RefreshRecord]) -> None:
    from attesto_asgi_sqlite import _store as impl

    statement = impl._PUT_REFRESH.replace("RETURNING 1", "")
    now = time.time()
    conn = sqlite3.connect(store.path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(statement, (impl._refresh_params(r, now) for r in records))
        conn.execute("COMMIT")
    finally:
        conn.close()


async def _fill_redis(store: Any, records: Sequence[RefreshRecord]) -> None:
    from attesto_asgi_redis import _store as impl

    put_refresh = store.client.register_script(impl._PUT_REFRESH)
    for start in range(0, len(records), 5000):
        pipe = store.client.pipeline(transaction=False)
        for r in records[start : start + 5000]:
            keys = [
                impl._revoked_key(store.prefix, r.family_id),
                impl._refresh_prefix(store.prefix, r.family_id) + r.token_hash,
            ]
            await put_refresh(keys=keys, args=[impl._encode(r), impl._ms(r.expires_at)], client=pipe)
        replies = await pipe.execute()
        if not all(replies):
            raise RuntimeError("refresh token refused by the store")

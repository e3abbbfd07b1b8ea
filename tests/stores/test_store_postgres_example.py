"""The example third-party backend (examples/custom_store: PostgreSQL via asyncpg) passes
the same conformance suite. Needs PostgreSQL on 127.0.0.1:5432 (trust auth, database
``test``): skipped with a reason where none is reachable, except under CI (``CI=true``),
where that is a failure."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator

import pytest

from attesto_asgi import StoreUnavailable, open_store
from attesto_asgi.store import Store
from attesto_asgi.testing import StoreContract, StoreFactory
from attesto_asgi.testing.store_contract import ContractClock, make_code
from tests.helpers import free_port

IN_CI = os.environ.get("CI") == "true"
HOST, PORT = "127.0.0.1", 5432
DSN = f"postgresql://postgres@{HOST}:{PORT}/test"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the PostgreSQL example must run in CI)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    import asyncpg  # type: ignore[import-untyped]
    from attesto_postgres_example import TABLES, PostgresStore
except ImportError as exc:  # pragma: no cover - depends on the environment
    _unavailable(f"examples/custom_store is not installed ({exc}): pip install -e examples/custom_store")


def _reachable() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module", autouse=True)
def _postgres() -> None:
    if not _reachable():
        _unavailable(f"no PostgreSQL reachable on {HOST}:{PORT}")


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A fresh schema per test, dropped afterwards."""
    name = "attesto_t_" + secrets.token_hex(6)
    yield name
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


class TestPostgresExample(StoreContract):
    @pytest.fixture
    def store_factory(self, schema: str) -> StoreFactory:
        return lambda clock: PostgresStore(f"{DSN}?schema={schema}", clock=clock, max_size=4)

    async def dump_raw(self, store: Store) -> bytes:
        assert isinstance(store, PostgresStore)
        conn = await asyncpg.connect(DSN, server_settings={"search_path": store.schema})
        try:
            rows = []
            for table in TABLES:
                rows += await conn.fetch(f"SELECT row_to_json(t)::text FROM {table} AS t")
            return "\n".join(r[0] for r in rows).encode()
        finally:
            await conn.close()


async def test_open_store_finds_the_example_by_entry_point(schema: str) -> None:
    store = open_store(f"{DSN}?schema={schema}")
    try:
        assert isinstance(store, PostgresStore)
        assert await store.claim_once("k", 60) is True
        assert await store.claim_once("k", 60) is False
    finally:
        await store.aclose()


async def test_purge_drops_expired_rows(schema: str) -> None:
    clock = ContractClock(controllable=True)
    store = PostgresStore(f"{DSN}?schema={schema}", clock=clock)
    try:
        code = make_code(clock(), ttl=10, reuse_margin=0)
        await store.put_code(code)
        await store.claim_once("k", 10)
        await clock.advance(11)
        await store.purge()
        conn = await asyncpg.connect(DSN, server_settings={"search_path": schema})
        try:
            assert await conn.fetchval("SELECT count(*) FROM attesto_codes") == 0
            assert await conn.fetchval("SELECT count(*) FROM attesto_claims") == 0
        finally:
            await conn.close()
    finally:
        await store.aclose()


async def test_a_schema_made_by_the_first_release_keeps_working(schema: str) -> None:
    """The first release's attesto_jtis also held each access token's family; nothing reads
    those columns now, and its rows keep answering (revoked jtis) or drain (the index)."""
    clock = ContractClock(controllable=True)
    now = clock()
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET search_path = "{schema}"')
        await conn.execute(
            """CREATE TABLE attesto_jtis (
                jti           text PRIMARY KEY,
                family_id     text,
                expires_at    double precision NOT NULL DEFAULT 0,
                revoked_until double precision NOT NULL DEFAULT 0
            )"""
        )
        await conn.execute(
            "INSERT INTO attesto_jtis (jti, family_id, expires_at) VALUES ('recorded', 'f', $1)", now + 900
        )
        await conn.execute("INSERT INTO attesto_jtis (jti, revoked_until) VALUES ('revoked', $1)", now + 900)
    finally:
        await conn.close()
    store = PostgresStore(f"{DSN}?schema={schema}", clock=clock)
    try:
        assert await store.access_token_revoked("revoked", None) is True
        assert await store.access_token_revoked("recorded", "f") is False
        await store.revoke_family("f", now + 3600)
        assert await store.access_token_revoked("recorded", "f") is True
        await store.revoke_access_token("new", now + 900)
        assert await store.access_token_revoked("new", None) is True
        await store.purge()
        conn = await asyncpg.connect(DSN, server_settings={"search_path": schema})
        try:
            rows = await conn.fetch("SELECT jti FROM attesto_jtis ORDER BY jti")
            assert [r["jti"] for r in rows] == ["new", "revoked"]  # the old index row drained
        finally:
            await conn.close()
    finally:
        await store.aclose()


async def test_unreachable_postgres_is_store_unavailable() -> None:
    # A loopback port nothing listens on.
    store = PostgresStore(f"postgresql://postgres@{HOST}:{free_port()}/test")
    try:
        with pytest.raises(StoreUnavailable):
            await store.take_code("h")
    finally:
        await store.aclose()

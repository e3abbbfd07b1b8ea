"""``PostgresStore``: an example third-party ``Store`` on PostgreSQL through asyncpg.

The design differs from the SQLite backend on purpose, to show what matters and what is
free: records are JSONB, and every operation is ONE statement in autocommit (READ
COMMITTED), using data-modifying CTEs where SQLite needs a transaction.

The one rule that makes READ COMMITTED safe: make every race land on ONE ROW. A second
``UPDATE`` of a row waits for the first to commit and then re-checks its ``WHERE`` on the
new row version, so exactly one wins. (A ``DELETE`` of the code plus an ``INSERT`` of a
tombstone would not do: the loser's statement snapshot predates the winner's tombstone,
so it would answer "unknown" instead of "reused".) Codes and their tombstones therefore
share a row, and ``claim_once``/``revoke_family`` are upserts on the contested key.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import msgspec

from attesto_asgi.errors import StoreUnavailable
from attesto_asgi.model import (
    AlreadyRotated,
    CodeRecord,
    CodeReused,
    FamilyRevoked,
    RefreshRecord,
    RefreshUnknown,
    Rotated,
)
from attesto_asgi.store import RotateResult

__all__ = ["TABLES", "PostgresStore", "open_postgres_store", "parse_postgres_url"]

T = TypeVar("T")
Clock = Callable[[], float]

# Still 1: a database made by the first release keeps two more columns in attesto_jtis
# (each access token's family, no longer recorded: tokens carry it as fid); nothing reads them.
SCHEMA_VERSION: Final = 1
TABLES: Final = ("attesto_codes", "attesto_refresh", "attesto_families", "attesto_jtis", "attesto_claims")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS attesto_schema_version (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS attesto_codes (
    code_hash  text PRIMARY KEY,
    record     jsonb NOT NULL,
    family_id  text NOT NULL,
    client_id  text NOT NULL,
    expires_at double precision NOT NULL,
    keep_until double precision NOT NULL,
    uses       integer NOT NULL DEFAULT 0,
    redeemed   boolean NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS attesto_refresh (
    family_id        text NOT NULL,
    token_hash       text NOT NULL,
    record           jsonb NOT NULL,
    expires_at       double precision NOT NULL,
    rotated_at       double precision,
    successor_hash   text,
    sealed_successor bytea,
    PRIMARY KEY (family_id, token_hash)
);
CREATE TABLE IF NOT EXISTS attesto_families (
    family_id     text PRIMARY KEY,
    revoked_until double precision NOT NULL,
    revoker       text NOT NULL
);
CREATE TABLE IF NOT EXISTS attesto_jtis (
    jti           text PRIMARY KEY,
    revoked_until double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS attesto_claims (key text PRIMARY KEY, until double precision NOT NULL);
"""

_PUT_CODE: Final = """
INSERT INTO attesto_codes (code_hash, record, family_id, client_id, expires_at, keep_until)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (code_hash) DO UPDATE SET record = EXCLUDED.record, family_id = EXCLUDED.family_id,
    client_id = EXCLUDED.client_id, expires_at = EXCLUDED.expires_at,
    keep_until = EXCLUDED.keep_until, uses = 0, redeemed = false"""

_TAKE_CODE: Final = """
UPDATE attesto_codes
SET uses = uses + 1,
    redeemed = CASE WHEN uses = 0 AND expires_at > $2 THEN true ELSE redeemed END
WHERE code_hash = $1 AND keep_until > $2
RETURNING uses, redeemed, record, family_id, client_id"""

_PUT_REFRESH: Final = """
INSERT INTO attesto_refresh
    (family_id, token_hash, record, expires_at, rotated_at, successor_hash, sealed_successor)
SELECT $1, $2, $4, $5, $6, $7, $8
WHERE NOT EXISTS (SELECT 1 FROM attesto_families WHERE family_id = $1 AND revoked_until > $3)
ON CONFLICT (family_id, token_hash) DO UPDATE SET record = EXCLUDED.record,
    expires_at = EXCLUDED.expires_at, rotated_at = EXCLUDED.rotated_at,
    successor_hash = EXCLUDED.successor_hash, sealed_successor = EXCLUDED.sealed_successor
RETURNING 1"""

_GET_REFRESH: Final = """
SELECT record, rotated_at, successor_hash, sealed_successor FROM attesto_refresh
WHERE family_id = $1 AND token_hash = $2 AND expires_at > $3
  AND NOT EXISTS (SELECT 1 FROM attesto_families WHERE family_id = $1 AND revoked_until > $3)"""

# One statement: mark the old token (the contested row) and insert the successor only if
# the mark won. $1 family, $2 old hash, $3 now, $4 successor hash, $5 sealed, $6 record, $7 exp.
_ROTATE: Final = """
WITH old AS (
    UPDATE attesto_refresh
    SET rotated_at = $3, successor_hash = $4, sealed_successor = $5
    WHERE family_id = $1 AND token_hash = $2 AND rotated_at IS NULL AND expires_at > $3
      AND NOT EXISTS (SELECT 1 FROM attesto_families WHERE family_id = $1 AND revoked_until > $3)
    RETURNING record
), successor AS (
    INSERT INTO attesto_refresh (family_id, token_hash, record, expires_at)
    SELECT $1, $4, $6, $7 FROM old
)
SELECT record FROM old"""

# After a lost rotation (a new statement, so it sees the winner): why it lost.
_WHY_NOT_ROTATED: Final = """
SELECT EXISTS (SELECT 1 FROM attesto_families WHERE family_id = $1 AND revoked_until > $3),
       r.record, r.rotated_at, r.successor_hash, r.sealed_successor,
       (s.token_hash IS NULL OR s.expires_at <= $3 OR s.rotated_at IS NOT NULL)
FROM (SELECT 1) AS one
LEFT JOIN attesto_refresh AS r ON r.family_id = $1 AND r.token_hash = $2 AND r.expires_at > $3
LEFT JOIN attesto_refresh AS s ON s.family_id = $1 AND s.token_hash = r.successor_hash"""

_REVOKE_FAMILY: Final = """
INSERT INTO attesto_families AS f (family_id, revoked_until, revoker) VALUES ($1, $2, $3)
ON CONFLICT (family_id) DO UPDATE SET
    revoker = CASE WHEN f.revoked_until > $4 THEN f.revoker ELSE EXCLUDED.revoker END,
    revoked_until = GREATEST(f.revoked_until, EXCLUDED.revoked_until)
RETURNING revoker"""

_REVOKE_JTI: Final = """
INSERT INTO attesto_jtis AS j (jti, revoked_until) VALUES ($1, $2)
ON CONFLICT (jti) DO UPDATE SET revoked_until = GREATEST(j.revoked_until, EXCLUDED.revoked_until)"""

# The jti revoked, or the token's family ($3, its verified fid; NULL matches nothing).
_JTI_REVOKED: Final = """
SELECT EXISTS (SELECT 1 FROM attesto_jtis WHERE jti = $1 AND revoked_until > $2)
    OR EXISTS (SELECT 1 FROM attesto_families WHERE family_id = $3 AND revoked_until > $2)"""

_CLAIM: Final = """
INSERT INTO attesto_claims AS c (key, until) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET until = EXCLUDED.until WHERE c.until <= $3
RETURNING 1"""

_PURGE: Final = """
WITH a AS (DELETE FROM attesto_codes WHERE keep_until <= $1),
     b AS (DELETE FROM attesto_refresh WHERE expires_at <= $1),
     c AS (DELETE FROM attesto_families WHERE revoked_until <= $1),
     d AS (DELETE FROM attesto_jtis WHERE revoked_until <= $1),
     e AS (DELETE FROM attesto_claims WHERE until <= $1)
SELECT 1"""

# Connection-level failures: the statement did not run, or its outcome is unknown.
_UNREACHABLE: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)


def parse_postgres_url(url: str) -> tuple[str, str]:
    """``(dsn, schema)``: our ``schema`` option (default ``public``) taken out of the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: scheme {parts.scheme!r}")
    query = parse_qsl(parts.query)
    schema = dict(query).get("schema", "public")
    if not schema.replace("_", "").isalnum():
        raise ValueError("schema must be letters, digits and underscores")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


def _refresh(record: str, rotated_at: float | None, successor: str | None, sealed: bytes | None) -> RefreshRecord:
    base = msgspec.json.decode(record, type=RefreshRecord)
    return msgspec.structs.replace(base, rotated_at=rotated_at, successor_hash=successor, sealed_successor=sealed)


def _json(record: msgspec.Struct) -> str:
    return msgspec.json.encode(record).decode()


class PostgresStore:
    """A ``Store`` on PostgreSQL. Connects (and creates its tables) on first use."""

    def __init__(self, url: str, *, clock: Clock = time.time, max_size: int = 10) -> None:
        self.dsn, self.schema = parse_postgres_url(url)
        self._clock = clock
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=1,
                    max_size=self._max_size,
                    timeout=5,
                    command_timeout=5,
                    server_settings={"search_path": self.schema},
                )
                try:
                    await self._create_schema(pool)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
        return self._pool

    async def _create_schema(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn, conn.transaction():
            # One creator at a time, across processes: a transaction-scoped advisory lock.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('attesto-schema'))")
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(_SCHEMA)
            version = await conn.fetchval("SELECT max(version) FROM attesto_schema_version")
            if version is None:
                await conn.execute("INSERT INTO attesto_schema_version VALUES ($1)", SCHEMA_VERSION)
            elif version > SCHEMA_VERSION:
                raise RuntimeError(f"schema version {version} is newer than this package ({SCHEMA_VERSION})")

    async def _call(self, run: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        try:
            return await run(await self._get_pool())
        except _UNREACHABLE as exc:
            raise StoreUnavailable(f"postgres store unavailable: {type(exc).__name__}") from exc

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._call(lambda pool: pool.fetchrow(sql, *args))

    async def _execute(self, sql: str, *args: Any) -> None:
        await self._call(lambda pool: pool.execute(sql, *args))

    # ------------------------------------------------------------- replay cache
    async def claim_once(self, key: str, ttl: float) -> bool:
        now = self._clock()
        return await self._fetchrow(_CLAIM, key, now + ttl, now) is not None

    # ------------------------------------------------------------- families
    async def revoke_family(self, family_id: str, until: float) -> bool:
        nonce = secrets.token_hex(8)
        row = await self._fetchrow(_REVOKE_FAMILY, family_id, until, nonce, self._clock())
        return row is not None and row[0] == nonce

    async def family_revoked(self, family_id: str) -> bool:
        sql = "SELECT 1 FROM attesto_families WHERE family_id = $1 AND revoked_until > $2"
        return await self._fetchrow(sql, family_id, self._clock()) is not None

    # ------------------------------------------------------------- access tokens
    async def revoke_access_token(self, jti: str, expires_at: float) -> None:
        await self._execute(_REVOKE_JTI, jti, expires_at)

    async def access_token_revoked(self, jti: str, family_id: str | None) -> bool:
        row = await self._fetchrow(_JTI_REVOKED, jti, self._clock(), family_id)
        return bool(row[0])

    # ------------------------------------------------------------- codes
    async def put_code(self, record: CodeRecord) -> None:
        keep = max(record.expires_at, record.reuse_detect_until)
        await self._execute(
            _PUT_CODE, record.code_hash, _json(record), record.family_id, record.client_id,
            record.expires_at, keep,
        )  # fmt: skip

    async def take_code(self, code_hash: str) -> CodeRecord | CodeReused | None:
        row = await self._fetchrow(_TAKE_CODE, code_hash, self._clock())
        if row is None or not row["redeemed"]:
            return None
        if row["uses"] == 1:
            return msgspec.json.decode(row["record"], type=CodeRecord)
        return CodeReused(family_id=row["family_id"], client_id=row["client_id"])

    # ------------------------------------------------------------- refresh tokens
    async def put_refresh(self, record: RefreshRecord) -> bool:
        row = await self._fetchrow(
            _PUT_REFRESH, record.family_id, record.token_hash, self._clock(), _json(record),
            record.expires_at, record.rotated_at, record.successor_hash, record.sealed_successor,
        )  # fmt: skip
        return row is not None

    async def get_refresh(self, family_id: str, token_hash: str) -> RefreshRecord | None:
        row = await self._fetchrow(_GET_REFRESH, family_id, token_hash, self._clock())
        return _refresh(*row) if row is not None else None

    async def rotate_refresh(
        self, family_id: str, old_hash: str, successor: RefreshRecord, sealed: bytes | None
    ) -> RotateResult:
        if successor.family_id != family_id:
            raise ValueError("a successor stays in its predecessor's family")
        now = self._clock()
        won = await self._fetchrow(
            _ROTATE, family_id, old_hash, now, successor.token_hash, sealed, _json(successor),
            successor.expires_at,
        )  # fmt: skip
        if won is not None:
            return Rotated(record=_refresh(won[0], None, None, None))
        why = await self._fetchrow(_WHY_NOT_ROTATED, family_id, old_hash, now)
        revoked, record, rotated_at, successor_hash, sealed_old, successor_used = why
        if revoked:
            return FamilyRevoked(family_id=family_id)
        if record is None or rotated_at is None:
            return RefreshUnknown()
        return AlreadyRotated(
            record=_refresh(record, rotated_at, successor_hash, sealed_old),
            successor_used=bool(successor_used),
        )

    # ------------------------------------------------------------- housekeeping
    async def purge(self) -> None:
        """Delete expired rows (run it from a periodic job; PostgreSQL has no TTLs)."""
        await self._execute(_PURGE, self._clock())

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


def open_postgres_store(url: str) -> PostgresStore:
    """Entry points ``postgresql`` and ``postgres``."""
    return PostgresStore(url)

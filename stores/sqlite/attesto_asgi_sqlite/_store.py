"""``SQLiteStore``: the attesto-asgi ``Store`` on one SQLite file, through aiosqlite.

Every state change is one SQLite write: either a single conditional statement
(``UPDATE ... WHERE ... RETURNING``, an upsert) or one ``BEGIN IMMEDIATE`` transaction,
so concurrent workers in any number of processes see each change whole (LESSONS: "every
state change is one atomic operation in the store"). Expiry is compared in SQL against a
``now`` taken from an injectable clock; expired rows are purged in small batches by a
background task so no request waits on a long delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlsplit

import aiosqlite
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

__all__ = ["SCHEMA_VERSION", "SQLiteOptions", "SQLiteStore", "open_sqlite_store", "parse_sqlite_url"]

log = logging.getLogger("attesto_asgi.sqlite")

T = TypeVar("T")
Conn = aiosqlite.Connection
Clock = Callable[[], float]

MEMORY: Final = ":memory:"
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6
_PURGE_BATCH: Final = 500

# ---------------------------------------------------------------- schema and migrations

# Migration n (1-based) takes a database at version n-1 to version n. Append only.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        # Codes and their tombstones share a row: ``uses`` counts takes, ``redeemed`` is set
        # by the one take that found the code live. ``keep_until`` = reuse_detect_until.
        """CREATE TABLE codes (
            code_hash  TEXT PRIMARY KEY,
            record     BLOB,
            family_id  TEXT NOT NULL,
            client_id  TEXT NOT NULL,
            expires_at REAL NOT NULL,
            keep_until REAL NOT NULL,
            uses       INTEGER NOT NULL DEFAULT 0,
            redeemed   INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID""",
        "CREATE INDEX codes_keep_until ON codes (keep_until)",
        # ``record`` is the record as put; the rotation fields live in their own columns.
        """CREATE TABLE refresh (
            family_id        TEXT NOT NULL,
            token_hash       TEXT NOT NULL,
            record           BLOB NOT NULL,
            expires_at       REAL NOT NULL,
            rotated_at       REAL,
            successor_hash   TEXT,
            sealed_successor BLOB,
            PRIMARY KEY (family_id, token_hash)
        ) WITHOUT ROWID""",
        "CREATE INDEX refresh_expires_at ON refresh (expires_at)",
        # ``revoker`` is a per-call nonce: the upsert that sets it is the one that revoked.
        """CREATE TABLE families (
            family_id     TEXT PRIMARY KEY,
            revoked_until REAL NOT NULL,
            revoker       TEXT NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX families_revoked_until ON families (revoked_until)",
        """CREATE TABLE access_tokens (
            jti        TEXT PRIMARY KEY,
            family_id  TEXT NOT NULL,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at)",
        """CREATE TABLE revoked_access_tokens (
            jti           TEXT PRIMARY KEY,
            revoked_until REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX revoked_access_tokens_until ON revoked_access_tokens (revoked_until)",
        "CREATE TABLE claims (key TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID",
        "CREATE INDEX claims_until ON claims (until)",
    ),
    (
        # Access tokens carry their family (the signed fid claim): the jti -> family index
        # is no longer written or read. Its rows only ever named families; drop them.
        "DROP TABLE IF EXISTS access_tokens",
    ),
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)

# ---------------------------------------------------------------- statements

_PUT_CODE: Final = """
INSERT OR REPLACE INTO codes (code_hash, record, family_id, client_id, expires_at, keep_until)
VALUES (:h, :record, :family_id, :client_id, :expires_at, :keep_until)"""

# One statement: the take that finds the code live (uses was 0, not expired) redeems it;
# every other take only counts. SET expressions read the row as it was before the update.
_TAKE_CODE: Final = """
UPDATE codes
SET uses = uses + 1,
    redeemed = CASE WHEN uses = 0 AND expires_at > :now THEN 1 ELSE redeemed END
WHERE code_hash = :h AND keep_until > :now
RETURNING uses, redeemed, record, family_id, client_id"""

_PUT_REFRESH: Final = """
INSERT OR REPLACE INTO refresh
    (family_id, token_hash, record, expires_at, rotated_at, successor_hash, sealed_successor)
SELECT :f, :h, :record, :expires_at, :rotated_at, :successor_hash, :sealed
WHERE NOT EXISTS (SELECT 1 FROM families WHERE family_id = :f AND revoked_until > :now)
RETURNING 1"""

_GET_REFRESH: Final = """
SELECT record, rotated_at, successor_hash, sealed_successor FROM refresh
WHERE family_id = :f AND token_hash = :h AND expires_at > :now
  AND NOT EXISTS (SELECT 1 FROM families WHERE family_id = :f AND revoked_until > :now)"""

# The compare-and-set of a rotation: only a live, unrotated token of an unrevoked family.
_MARK_ROTATED: Final = """
UPDATE refresh SET rotated_at = :now, successor_hash = :successor_hash, sealed_successor = :sealed
WHERE family_id = :f AND token_hash = :h AND rotated_at IS NULL AND expires_at > :now
  AND NOT EXISTS (SELECT 1 FROM families WHERE family_id = :f AND revoked_until > :now)
RETURNING record"""

_INSERT_SUCCESSOR: Final = """
INSERT OR REPLACE INTO refresh (family_id, token_hash, record, expires_at)
VALUES (:f, :h, :record, :expires_at)"""

# Why a rotation lost, read in the same transaction: revoked family first, then the token.
_WHY_NOT_ROTATED: Final = """
SELECT EXISTS (SELECT 1 FROM families WHERE family_id = :f AND revoked_until > :now),
       r.record, r.rotated_at, r.successor_hash, r.sealed_successor,
       (s.token_hash IS NULL OR s.expires_at <= :now OR s.rotated_at IS NOT NULL)
FROM (SELECT 1) AS one
LEFT JOIN refresh AS r ON r.family_id = :f AND r.token_hash = :h AND r.expires_at > :now
LEFT JOIN refresh AS s ON s.family_id = :f AND s.token_hash = r.successor_hash"""

_REVOKE_FAMILY: Final = """
INSERT INTO families (family_id, revoked_until, revoker) VALUES (:f, :until, :nonce)
ON CONFLICT (family_id) DO UPDATE SET
    revoker = CASE WHEN revoked_until > :now THEN revoker ELSE excluded.revoker END,
    revoked_until = max(revoked_until, excluded.revoked_until)
RETURNING revoker"""

_FAMILY_REVOKED: Final = "SELECT 1 FROM families WHERE family_id = :f AND revoked_until > :now"

_REVOKE_JTI: Final = """
INSERT INTO revoked_access_tokens (jti, revoked_until) VALUES (:jti, :until)
ON CONFLICT (jti) DO UPDATE SET revoked_until = max(revoked_until, excluded.revoked_until)"""

# One read: the jti revoked, or the token's family (its verified fid; NULL matches nothing).
_JTI_REVOKED: Final = """
SELECT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = :jti AND revoked_until > :now)
    OR EXISTS (SELECT 1 FROM families WHERE family_id = :f AND revoked_until > :now)"""

# Inserted, or re-claimed after the old claim expired: a row comes back only then.
_CLAIM: Final = """
INSERT INTO claims (key, until) VALUES (:k, :until)
ON CONFLICT (key) DO UPDATE SET until = excluded.until WHERE claims.until <= :now
RETURNING 1"""

# Purges: bounded batches, each its own short write, so requests interleave.
_PURGES: Final[tuple[str, ...]] = (
    "DELETE FROM codes WHERE code_hash IN (SELECT code_hash FROM codes WHERE keep_until <= :now LIMIT :n)",
    # A redeemed code's tombstone needs only its family and client: drop the record.
    "UPDATE codes SET record = NULL WHERE code_hash IN "
    "(SELECT code_hash FROM codes WHERE redeemed = 1 AND uses > 0 AND record IS NOT NULL LIMIT :n)",
    "DELETE FROM refresh WHERE (family_id, token_hash) IN "
    "(SELECT family_id, token_hash FROM refresh WHERE expires_at <= :now LIMIT :n)",
    "DELETE FROM families WHERE family_id IN (SELECT family_id FROM families WHERE revoked_until <= :now LIMIT :n)",
    "DELETE FROM revoked_access_tokens WHERE jti IN "
    "(SELECT jti FROM revoked_access_tokens WHERE revoked_until <= :now LIMIT :n)",
    "DELETE FROM claims WHERE key IN (SELECT key FROM claims WHERE until <= :now LIMIT :n)",
)

# ---------------------------------------------------------------- options and URL


class SQLiteOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Where the database is and how the store talks to it."""

    path: str
    busy_timeout_ms: int = 2000
    retries: int = 2
    synchronous: str = "FULL"
    pool: int = 4
    purge_interval: float = 60.0

    @property
    def in_memory(self) -> bool:
        return self.path == MEMORY


def parse_sqlite_url(url: str) -> SQLiteOptions:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite:///:memory:``;
    options as query parameters (``busy_timeout``, ``retries``, ``synchronous``, ``pool``,
    ``purge_interval``)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ValueError(f"not a sqlite URL: scheme {parts.scheme!r}")
    if parts.netloc:
        raise ValueError("sqlite URLs have no host: use sqlite:///relative.db or sqlite:////absolute.db")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ValueError("sqlite URL without a path: use sqlite:///attesto.db or sqlite:///:memory:")
    query = dict(parse_qsl(parts.query, strict_parsing=bool(parts.query)))
    known = {"busy_timeout", "retries", "synchronous", "pool", "purge_interval"}
    if unknown := set(query) - known:
        raise ValueError(f"unknown sqlite URL option(s): {', '.join(sorted(unknown))}")
    synchronous = query.get("synchronous", "full").upper()
    if synchronous not in ("FULL", "NORMAL", "EXTRA"):
        raise ValueError("synchronous must be full, normal or extra")
    opts = SQLiteOptions(
        path=path,
        busy_timeout_ms=int(query.get("busy_timeout", 2000)),
        retries=int(query.get("retries", 2)),
        synchronous=synchronous,
        pool=int(query.get("pool", 4)),
        purge_interval=float(query.get("purge_interval", 60.0)),
    )
    if opts.pool < 1 or opts.retries < 0 or opts.busy_timeout_ms < 0 or opts.purge_interval <= 0:
        raise ValueError("sqlite URL options out of range")
    return opts


# ---------------------------------------------------------------- small pure helpers

_code_decoder: Final = msgspec.msgpack.Decoder(CodeRecord)
_refresh_decoder: Final = msgspec.msgpack.Decoder(RefreshRecord)
_encode: Final = msgspec.msgpack.encode


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _refresh_from_row(blob: bytes, rotated_at: Any, successor_hash: Any, sealed: Any) -> RefreshRecord:
    return msgspec.structs.replace(
        _refresh_decoder.decode(blob),
        rotated_at=rotated_at,
        successor_hash=successor_hash,
        sealed_successor=bytes(sealed) if sealed is not None else None,
    )


def _refresh_params(record: RefreshRecord, now: float) -> dict[str, Any]:
    return {
        "f": record.family_id,
        "h": record.token_hash,
        "record": _encode(record),
        "expires_at": record.expires_at,
        "rotated_at": record.rotated_at,
        "successor_hash": record.successor_hash,
        "sealed": record.sealed_successor,
        "now": now,
    }


def _take_result(row: Any) -> CodeRecord | CodeReused | None:
    uses, redeemed, blob, family_id, client_id = row
    if not redeemed:
        return None  # expired before anyone redeemed it: no tombstone to report
    if uses == 1:
        return _code_decoder.decode(blob)
    return CodeReused(family_id=family_id, client_id=client_id)


def _why_not_rotated(family_id: str, row: Any) -> RotateResult:
    revoked, blob, rotated_at, successor_hash, sealed, successor_used = row
    if revoked:
        return FamilyRevoked(family_id=family_id)
    if blob is None:
        return RefreshUnknown()
    if rotated_at is None:  # cannot happen inside one transaction; never report a win
        raise RuntimeError("refresh token neither rotated nor rotatable")
    record = _refresh_from_row(blob, rotated_at, successor_hash, sealed)
    return AlreadyRotated(record=record, successor_used=bool(successor_used))


# ---------------------------------------------------------------- the store


class SQLiteStore:
    """A ``Store`` on one SQLite database file, shared safely by any number of processes.

    Connects lazily on first use (``open_store`` is synchronous). ``clock`` supplies "now"
    for every expiry comparison (tests inject a fake one).
    """

    def __init__(self, options: SQLiteOptions, *, clock: Clock = time.time) -> None:
        self.options = options
        self._clock = clock
        self._size = 1 if options.in_memory else options.pool  # each :memory: connection is its own db
        self._idle: list[Conn] = []
        self._slots: asyncio.Semaphore | None = None
        self._init_lock = asyncio.Lock()
        self._ready = False
        self._purger: asyncio.Task[None] | None = None

    @property
    def path(self) -> str:
        return self.options.path

    # ------------------------------------------------------------- connections
    async def _connect(self) -> Conn:
        if not self.options.in_memory:
            # Fail here, not inside aiosqlite: a failed aiosqlite connect leaves its worker
            # thread to report to the event loop later, after the caller may have closed it.
            await asyncio.to_thread(_probe, self.options.path)
        conn = await aiosqlite.connect(self.options.path, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(self.options.busy_timeout_ms)}")
            await conn.execute(f"PRAGMA synchronous = {self.options.synchronous}")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._init_lock:
            if self._ready:
                return
            if self._slots is None:
                self._slots = asyncio.Semaphore(self._size)
            attempt = 0
            while True:
                conn = await self._connect()
                try:
                    await self._migrate(conn)
                    break
                except sqlite3.Error as exc:
                    await conn.close()
                    if _is_busy(exc) and attempt < self.options.retries:
                        attempt += 1
                        await asyncio.sleep(random.uniform(0.005, 0.02) * attempt)  # noqa: S311 (jitter)
                        continue
                    raise
                except BaseException:
                    await conn.close()
                    raise
            self._idle.append(conn)
            self._ready = True
            if self._purger is None or self._purger.done():
                self._purger = asyncio.get_running_loop().create_task(self._purge_loop())

    @staticmethod
    async def _schema_version(conn: Conn) -> int:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        exists = list(await conn.execute_fetchall(sql))
        if not exists:
            return 0
        rows = list(await conn.execute_fetchall("SELECT max(version) FROM schema_version"))
        return int(rows[0][0] or 0)

    async def _migrate(self, conn: Conn) -> None:
        if not self.options.in_memory:
            # WAL: readers never block the writer; the mode persists in the file.
            mode = list(await conn.execute_fetchall("PRAGMA journal_mode"))
            if mode[0][0] != "wal":
                await conn.execute("PRAGMA journal_mode = WAL")
        current = await self._schema_version(conn)
        if current == SCHEMA_VERSION:
            return  # the common case takes no write lock
        # BEGIN IMMEDIATE: several processes may open a fresh file at once; one migrates.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = await self._schema_version(conn)
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.options.path}: schema version {current} is newer than this "
                    f"attesto-asgi-sqlite ({SCHEMA_VERSION}); upgrade the package"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version - 1]:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                log.info("%s: schema migrated to version %d", self.options.path, version)
            await conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
            raise

    async def _acquire(self) -> Conn:
        assert self._slots is not None
        await self._slots.acquire()
        try:
            if self._idle:
                return self._idle.pop()
            return await self._connect()
        except BaseException:
            self._slots.release()
            raise

    async def _release(self, conn: Conn, *, healthy: bool) -> None:
        assert self._slots is not None
        try:
            # The only :memory: connection holds the data: keep it unless the store closed.
            if self._ready and (healthy or self.options.in_memory):
                self._idle.append(conn)
            else:
                with contextlib.suppress(Exception):
                    await conn.close()
        finally:
            self._slots.release()

    async def _run(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        """Run one atomic operation; retry it (bounded) while the database is busy.

        Every failure rolls back first, so a failed attempt changed nothing and a retry or a
        ``StoreUnavailable`` is safe (the operation did not apply).
        """
        try:
            await self._ensure_ready()
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"sqlite store {self.options.path!r} cannot be opened: {exc}") from exc
        attempt = 0
        while True:
            conn = await self._acquire()
            healthy = False
            try:
                result = await op(conn)
                healthy = True
                return result
            except sqlite3.Error as exc:
                healthy = await self._rollback(conn)
                if _is_busy(exc) and attempt < self.options.retries:
                    attempt += 1
                    await asyncio.sleep(random.uniform(0.005, 0.02) * attempt)  # noqa: S311 (jitter)
                    continue
                log.warning("sqlite store %r: %s (attempt %d)", self.options.path, exc, attempt + 1)
                raise StoreUnavailable(f"sqlite store unavailable: {exc}") from exc
            except BaseException:
                # Cancelled mid-operation: statements still queued on the connection run, so
                # the rollback is queued after them and leaves the connection clean.
                healthy = await self._rollback(conn)
                raise
            finally:
                await self._release(conn, healthy=healthy)

    @staticmethod
    async def _rollback(conn: Conn) -> bool:
        try:
            await conn.rollback()
            return True
        except BaseException:
            return False

    async def _fetch(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        async def op(conn: Conn) -> list[Any]:
            return list(await conn.execute_fetchall(sql, params))

        return await self._run(op)

    async def _exec(self, sql: str, params: Mapping[str, Any]) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute_fetchall(sql, params)

        await self._run(op)

    # ------------------------------------------------------------- replay cache
    async def claim_once(self, key: str, ttl: float) -> bool:
        now = self._clock()
        rows = await self._fetch(_CLAIM, {"k": key, "until": now + ttl, "now": now})
        return bool(rows)

    # ------------------------------------------------------------- families
    async def revoke_family(self, family_id: str, until: float) -> bool:
        nonce = secrets.token_hex(8)
        rows = await self._fetch(_REVOKE_FAMILY, {"f": family_id, "until": until, "nonce": nonce, "now": self._clock()})
        return bool(rows) and rows[0][0] == nonce

    async def family_revoked(self, family_id: str) -> bool:
        return bool(await self._fetch(_FAMILY_REVOKED, {"f": family_id, "now": self._clock()}))

    # ------------------------------------------------------------- access tokens
    async def revoke_access_token(self, jti: str, expires_at: float) -> None:
        await self._exec(_REVOKE_JTI, {"jti": jti, "until": expires_at})

    async def access_token_revoked(self, jti: str, family_id: str | None) -> bool:
        rows = await self._fetch(_JTI_REVOKED, {"jti": jti, "f": family_id, "now": self._clock()})
        return bool(rows[0][0])

    # ------------------------------------------------------------- codes
    async def put_code(self, record: CodeRecord) -> None:
        await self._exec(
            _PUT_CODE,
            {
                "h": record.code_hash,
                "record": _encode(record),
                "family_id": record.family_id,
                "client_id": record.client_id,
                "expires_at": record.expires_at,
                "keep_until": max(record.expires_at, record.reuse_detect_until),
            },
        )

    async def take_code(self, code_hash: str) -> CodeRecord | CodeReused | None:
        rows = await self._fetch(_TAKE_CODE, {"h": code_hash, "now": self._clock()})
        return _take_result(rows[0]) if rows else None

    # ------------------------------------------------------------- refresh tokens
    async def put_refresh(self, record: RefreshRecord) -> bool:
        return bool(await self._fetch(_PUT_REFRESH, _refresh_params(record, self._clock())))

    async def get_refresh(self, family_id: str, token_hash: str) -> RefreshRecord | None:
        rows = await self._fetch(_GET_REFRESH, {"f": family_id, "h": token_hash, "now": self._clock()})
        return _refresh_from_row(*rows[0]) if rows else None

    async def rotate_refresh(
        self, family_id: str, old_hash: str, successor: RefreshRecord, sealed: bytes | None
    ) -> RotateResult:
        if successor.family_id != family_id:
            raise ValueError("a successor stays in its predecessor's family")
        now = self._clock()
        key = {"f": family_id, "h": old_hash, "now": now}
        mark = {**key, "successor_hash": successor.token_hash, "sealed": sealed}

        async def op(conn: Conn) -> RotateResult:
            # One transaction: mark the old token and store the successor, or neither.
            await conn.execute("BEGIN IMMEDIATE")
            won = list(await conn.execute_fetchall(_MARK_ROTATED, mark))
            if won:
                await conn.execute(
                    _INSERT_SUCCESSOR,
                    {
                        "f": family_id,
                        "h": successor.token_hash,
                        "record": _encode(successor),
                        "expires_at": successor.expires_at,
                    },
                )
                await conn.execute("COMMIT")
                return Rotated(record=_refresh_from_row(won[0][0], None, None, None))
            why = list(await conn.execute_fetchall(_WHY_NOT_ROTATED, key))
            await conn.execute("COMMIT")
            return _why_not_rotated(family_id, why[0])

        return await self._run(op)

    # ------------------------------------------------------------- housekeeping
    async def purge(self) -> int:
        """Delete expired rows in small batches; the number of rows changed."""
        total = 0
        for sql in _PURGES:
            while True:
                params = {"now": self._clock(), "n": _PURGE_BATCH}
                changed = await self._run(_changes(sql, params))
                total += changed
                if changed < _PURGE_BATCH:
                    break
                await asyncio.sleep(0)  # let requests in between batches
        return total

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.purge_interval)
            try:
                removed = await self.purge()
            except StoreUnavailable as exc:
                log.warning("sqlite store %r: purge skipped: %s", self.options.path, exc)
            else:
                if removed:
                    log.debug("sqlite store %r: purged %d expired rows", self.options.path, removed)

    async def dump(self) -> bytes:
        """The whole database as SQL text (for diagnostics and the contract's secret scan)."""

        async def op(conn: Conn) -> bytes:
            return "\n".join([line async for line in conn.iterdump()]).encode()

        return await self._run(op)

    async def aclose(self) -> None:
        purger, self._purger = self._purger, None
        if purger is not None:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.close()
        self._ready = False


def _probe(path: str) -> None:
    """Open and close the database file (raises ``sqlite3.Error`` when it cannot be opened)."""
    sqlite3.connect(path).close()


def _changes(sql: str, params: Mapping[str, Any]) -> Callable[[Conn], Awaitable[int]]:
    async def op(conn: Conn) -> int:
        cursor = await conn.execute(sql, params)
        try:
            return cursor.rowcount
        finally:
            await cursor.close()

    return op


def open_sqlite_store(url: str) -> SQLiteStore:
    """Entry point ``sqlite``: ``open_store("sqlite:///attesto.db")``."""
    return SQLiteStore(parse_sqlite_url(url))

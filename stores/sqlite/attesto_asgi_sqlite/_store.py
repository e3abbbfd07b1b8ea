"""``SQLiteStore``: the attesto-asgi ``Store`` on one SQLite file, with group commit.

Every state change is one SQLite write: either a single conditional statement
(``UPDATE ... WHERE ... RETURNING``, an upsert) or a short sequence of statements, always
inside a ``BEGIN IMMEDIATE`` transaction, so concurrent workers in any number of processes
see each change whole (LESSONS: "every state change is one atomic operation in the
store").

Group commit: the state changes that callers in one process make at the same time are
queued, and one writer thread runs a batch of them in one transaction with one ``COMMIT``
(so one fsync pays for the whole batch). Each operation runs inside its own ``SAVEPOINT``
and sees the effects of the ones before it; an operation that fails is rolled back to its
savepoint alone. A caller hears its answer only after the batch's ``COMMIT`` succeeded;
when the batch cannot commit, every operation in it fails with ``StoreUnavailable``.
Reads go to a second connection on a thread of its own (WAL: readers never wait for the
writer), batched the same way but without a transaction.

Checkpoints: copying the WAL back into the database file is left to a third connection on
a thread of its own, which runs a ``PASSIVE`` checkpoint after commits (it neither waits
for nor blocks readers and the writer). SQLite's automatic checkpoint would run inside a
``COMMIT`` every ~1,000 pages, and every caller of that batch would wait for it; the writer
keeps it only as a backstop, past 4,000 pages.

Expiry is compared in SQL against a ``now`` taken from an injectable clock; expired rows
are purged in small batches by a background task so no request waits on a long delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import random
import secrets
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlsplit

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
Conn = sqlite3.Connection
Op = Callable[[Conn], Any]
Clock = Callable[[], float]

MEMORY: Final = ":memory:"
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6
_PURGE_BATCH: Final = 500
# Operations that may wait for a batch, per batch size (back-pressure beyond that).
_PENDING_PER_BATCH: Final = 4
# Checkpoint runs are at least this far apart unless the WAL is being caught up with.
_CHECKPOINT_PAUSE: Final = 0.005
# The writer checkpoints itself only past this many WAL pages (SQLite's default is 1,000):
# a backstop for writes so steady that the checkpointer never finds the writer idle.
_WRITER_CHECKPOINT_PAGES: Final = 4000
# What is left of a WAL file after the log restarts: a burst (a migration copying a table)
# may have grown it far past what a steady load needs (~16 MiB: the backstop above).
_WAL_SIZE_LIMIT: Final = 64 * 1024 * 1024

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
    (
        # Codes and refresh tokens move from WITHOUT ROWID tables to rowid tables with a
        # unique index on their key. A WITHOUT ROWID table keeps whole rows in its interior
        # pages too, which SQLite advises only for rows under ~1/20th of a page; these rows
        # hold a record of a few hundred bytes, and a rotation rewrote ~3.7 pages of the WAL
        # (new rows landing at random keys split pages). Now new rows append at the table's
        # end and only the small key index takes them at random: ~2.6 pages per rotation.
        """CREATE TABLE codes_v3 (
            code_hash  TEXT NOT NULL,
            record     BLOB,
            family_id  TEXT NOT NULL,
            client_id  TEXT NOT NULL,
            expires_at REAL NOT NULL,
            keep_until REAL NOT NULL,
            uses       INTEGER NOT NULL DEFAULT 0,
            redeemed   INTEGER NOT NULL DEFAULT 0
        )""",
        """INSERT INTO codes_v3 (code_hash, record, family_id, client_id, expires_at, keep_until, uses, redeemed)
        SELECT code_hash, record, family_id, client_id, expires_at, keep_until, uses, redeemed FROM codes""",
        "DROP TABLE codes",
        "ALTER TABLE codes_v3 RENAME TO codes",
        "CREATE UNIQUE INDEX codes_key ON codes (code_hash)",
        "CREATE INDEX codes_keep_until ON codes (keep_until)",
        """CREATE TABLE refresh_v3 (
            family_id        TEXT NOT NULL,
            token_hash       TEXT NOT NULL,
            record           BLOB NOT NULL,
            expires_at       REAL NOT NULL,
            rotated_at       REAL,
            successor_hash   TEXT,
            sealed_successor BLOB
        )""",
        """INSERT INTO refresh_v3
            (family_id, token_hash, record, expires_at, rotated_at, successor_hash, sealed_successor)
        SELECT family_id, token_hash, record, expires_at, rotated_at, successor_hash, sealed_successor FROM refresh""",
        "DROP TABLE refresh",
        "ALTER TABLE refresh_v3 RENAME TO refresh",
        "CREATE UNIQUE INDEX refresh_key ON refresh (family_id, token_hash)",
        "CREATE INDEX refresh_expires_at ON refresh (expires_at)",
    ),
    (
        # The take that redeems a code leaves a tombstone (family, client: all reuse detection
        # reads), as the other stores do. The record went later, by a purge with no index to
        # find such rows: it scanned the table once per 500 rows it fixed. An AFTER trigger
        # drops it in the same statement; RETURNING still reports the record as the UPDATE
        # itself left it ("does not report ... changes caused by ... triggers").
        """CREATE TRIGGER codes_tombstone AFTER UPDATE OF uses ON codes
        WHEN NEW.uses = 1 AND NEW.redeemed = 1 AND NEW.record IS NOT NULL
        BEGIN UPDATE codes SET record = NULL WHERE rowid = NEW.rowid; END""",
        "UPDATE codes SET record = NULL WHERE redeemed = 1 AND uses > 0",
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
    "DELETE FROM codes WHERE rowid IN (SELECT rowid FROM codes WHERE keep_until <= :now LIMIT :n)",
    "DELETE FROM refresh WHERE rowid IN (SELECT rowid FROM refresh WHERE expires_at <= :now LIMIT :n)",
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
    batch: int = 64
    purge_interval: float = 60.0

    @property
    def in_memory(self) -> bool:
        return self.path == MEMORY


def parse_sqlite_url(url: str) -> SQLiteOptions:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite:///:memory:``;
    options as query parameters (``busy_timeout``, ``retries``, ``synchronous``, ``batch``,
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
    known = {"busy_timeout", "retries", "synchronous", "batch", "purge_interval"}
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
        batch=int(query.get("batch", 64)),
        purge_interval=float(query.get("purge_interval", 60.0)),
    )
    if opts.batch < 1 or opts.retries < 0 or opts.busy_timeout_ms < 0 or opts.purge_interval <= 0:
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


# ---------------------------------------------------------------- threads and batches

# What one operation of a batch came to: its value, or the exception it raised.
Outcome = tuple[Any, BaseException | None]


def _jitter(attempt: int) -> float:
    return random.uniform(0.005, 0.02) * attempt  # noqa: S311 (jitter, not a secret)


class _Thread:
    """One thread owning one ``sqlite3`` connection: calls run there one at a time, in the
    order submitted, and answer on the caller's event loop (one hop there and back per
    call). The connection is opened on the thread before the first call, and again after a
    call that left it unusable (a transaction it could not roll back)."""

    def __init__(self, name: str, connect: Callable[[], Conn]) -> None:
        self._connect = connect
        self._conn: Conn | None = None
        self._jobs: queue.SimpleQueue[tuple[asyncio.Future[Any] | None, Op | None]] = queue.SimpleQueue()
        # A daemon: a process that exits without aclose() is not kept alive by an idle store;
        # SQLite rolls back whatever was not committed.
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[[Conn], T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, fn))
        return await future

    async def close(self) -> None:
        """Close the connection once the calls already submitted ran; end the thread."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, None))
        await future

    def stop(self) -> None:
        """``close`` without waiting (for paths that cannot await)."""
        self._jobs.put((None, None))

    def _main(self) -> None:
        while True:
            future, fn = self._jobs.get()
            if fn is None:
                self._drop()
                self._settle(future, None, None)
                return
            try:
                if self._conn is None:
                    self._conn = self._connect()
                result = fn(self._conn)
            except BaseException as exc:
                self._settle(future, None, exc)
            else:
                self._settle(future, result, None)
            # No call leaves a transaction open; a connection that cannot end one is replaced.
            if self._conn is not None and self._conn.in_transaction:
                try:
                    self._conn.rollback()
                except sqlite3.Error:
                    self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @staticmethod
    def _settle(future: asyncio.Future[Any] | None, result: Any, exc: BaseException | None) -> None:
        if future is None:
            return

        def settle() -> None:
            if future.done():  # the caller was cancelled: nobody reads the answer
                return
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)

        with contextlib.suppress(RuntimeError):  # the event loop closed meanwhile
            future.get_loop().call_soon_threadsafe(settle)


class _Checkpointer:
    """Copies the WAL back into the database file on a thread and connection of its own.

    The writer calls ``committed()`` after each ``COMMIT``; the thread then runs
    ``PRAGMA wal_checkpoint(PASSIVE)``, which copies what no reader still needs and takes no
    lock a writer or reader waits for, so commits go on meanwhile and none waits for a
    checkpoint. A run that leaves frames uncopied while still making progress (commits
    landed during it) runs again at once: a run that copies every frame lets the next write
    transaction start the WAL again from its beginning (SQLite's rule), which keeps the WAL
    file from growing under a steady load. Otherwise runs are at least ``pause`` apart. A
    failed run is logged and tried again after the next commit: only the WAL grows
    meanwhile, and no caller waits for it.
    """

    def __init__(self, connect: Callable[[], Conn], path: str, pause: float = _CHECKPOINT_PAUSE) -> None:
        self._connect = connect
        self._path = path
        self._pause = pause
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self.runs = 0  # completed checkpoints (tests and diagnostics)
        self._thread = threading.Thread(target=self._main, name="attesto-sqlite-checkpointer", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._wanted.set()

    def stop(self) -> None:
        """End the thread after its current run (never waits for it)."""
        self._stopping.set()
        self._wanted.set()

    def _main(self) -> None:
        conn: Conn | None = None
        copied_before = -1
        try:
            while self._wanted.wait() and not self._stopping.is_set():
                self._wanted.clear()
                try:
                    conn = conn or self._connect()
                    _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.runs += 1
                except sqlite3.Error as exc:
                    log.warning("sqlite store %r: checkpoint failed: %s", self._path, exc)
                    if conn is not None:
                        with contextlib.suppress(sqlite3.Error):
                            conn.close()
                    conn, frames, copied = None, 0, 0
                if 0 <= copied < frames and copied != copied_before:
                    self._wanted.set()  # commits landed during the run: copy those now
                elif self._stopping.wait(self._pause):
                    return
                copied_before = copied
        finally:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()


class _Queued:
    __slots__ = ("future", "op")

    def __init__(self, op: Op, future: asyncio.Future[Any]) -> None:
        self.op = op
        self.future = future


class _Batcher:
    """Callers queue operations; one task hands them to a ``_Thread`` up to ``max_batch``
    at a time, as one call (one thread hop per batch), and answers every caller from the
    batch's outcomes.

    Bounded: at most ``max_batch * _PENDING_PER_BATCH`` operations wait in the queue; a
    caller past that waits for room (back-pressure, not memory growth). A caller cancelled
    while its operation still waits in the queue takes it out (it never runs); once the
    operation is in a running batch it commits or rolls back with the batch, and the
    cancelled caller does not hear which.
    """

    def __init__(
        self,
        name: str,
        thread: _Thread,
        run: Callable[[Conn, Sequence[Op]], list[Outcome]],
        *,
        max_batch: int,
        path: str,
    ) -> None:
        self._thread = thread
        self._run = run
        self._max_batch = max_batch
        self._path = path
        self._queue: deque[_Queued] = deque()
        self._limit = max_batch * _PENDING_PER_BATCH
        self._room = asyncio.Semaphore(self._limit)
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=name)

    @property
    def limit(self) -> int:
        """How many operations may wait in the queue."""
        return self._limit

    @property
    def pending(self) -> int:
        """Operations queued and not yet in a batch."""
        return len(self._queue)

    async def submit(self, op: Callable[[Conn], T]) -> T:
        if self._closing:
            raise StoreUnavailable(f"sqlite store {self._path!r} is closed")
        await self._room.acquire()
        if self._closing:
            self._room.release()
            raise StoreUnavailable(f"sqlite store {self._path!r} is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(op, future))
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Run and answer everything already queued, then stop."""
        self._closing = True
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._task)
        while self._queue:  # none are left unless the task ended early; never leave a caller hanging
            self._fail(self._queue.popleft(), f"sqlite store {self._path!r} is closed")
            self._room.release()

    def _take(self) -> list[_Queued]:
        batch: list[_Queued] = []
        while self._queue and len(batch) < self._max_batch:
            item = self._queue.popleft()
            self._room.release()
            if not item.future.done():  # done already: its caller was cancelled
                batch.append(item)
        return batch

    async def _loop(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if batch := self._take():
                    await self._run_batch(batch)
        except asyncio.CancelledError:
            # The event loop is shutting down: nothing queued will run.
            self._closing = True
            while self._queue:
                self._fail(self._queue.popleft(), "the store shut down")
                self._room.release()
            raise

    async def _run_batch(self, batch: list[_Queued]) -> None:
        ops = [item.op for item in batch]
        try:
            outcomes = await self._thread.call(lambda conn: self._run(conn, ops))
        except asyncio.CancelledError:
            for item in batch:  # the batch may still commit: its outcome is unknown
                self._fail(item, "the store shut down before the batch's outcome was known")
            raise
        except Exception as exc:
            # The whole batch failed (could not begin, or commit, or lost its transaction):
            # it was rolled back, so no operation in it applied.
            log.warning("sqlite store %r: a batch of %d operation(s) failed: %s", self._path, len(batch), exc)
            for item in batch:
                self._fail(item, f"sqlite store unavailable: {exc}", exc)
            return
        for item, (value, error) in zip(batch, outcomes, strict=True):
            if item.future.done():
                continue
            if error is None:
                item.future.set_result(value)
            elif isinstance(error, sqlite3.Error):
                log.warning("sqlite store %r: %s", self._path, error)
                self._fail(item, f"sqlite store unavailable: {error}", error)
            else:
                item.future.set_exception(error)

    @staticmethod
    def _fail(item: _Queued, message: str, cause: BaseException | None = None) -> None:
        if not item.future.done():
            exc = StoreUnavailable(message)
            exc.__cause__ = cause
            item.future.set_exception(exc)


def _write_batch(conn: Conn, ops: Sequence[Op], retries: int) -> list[Outcome]:
    """Run ``ops`` in one ``BEGIN IMMEDIATE`` transaction with one ``COMMIT``; the whole
    batch is rolled back and tried again (bounded) while the database is busy."""
    attempt = 0
    while True:
        try:
            return _write_once(conn, ops)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()  # a failed attempt changed nothing: a retry is safe
            if _is_busy(exc) and attempt < retries:
                attempt += 1
                time.sleep(_jitter(attempt))  # this thread only waits to write
                continue
            raise


def _write_once(conn: Conn, ops: Sequence[Op]) -> list[Outcome]:
    conn.execute("BEGIN IMMEDIATE")
    outcomes: list[Outcome] = []
    for op in ops:
        # Each operation sees the effects of the ones before it; its own failure is rolled
        # back to its savepoint and leaves the others alone.
        conn.execute("SAVEPOINT op")
        try:
            value = op(conn)
        except Exception as exc:
            if not conn.in_transaction or (isinstance(exc, sqlite3.Error) and _is_busy(exc)):
                raise  # the transaction itself is lost (or the database busy): the whole batch
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            outcomes.append((None, exc))
        else:
            conn.execute("RELEASE op")
            outcomes.append((value, None))
    conn.execute("COMMIT")
    return outcomes


def _read_batch(conn: Conn, ops: Sequence[Op], retries: int) -> list[Outcome]:
    """Run ``ops`` one after another, each its own read (no transaction around them)."""
    outcomes: list[Outcome] = []
    for op in ops:
        attempt = 0
        while True:
            try:
                outcomes.append((op(conn), None))
            except sqlite3.Error as exc:
                if _is_busy(exc) and attempt < retries:
                    attempt += 1
                    time.sleep(_jitter(attempt))
                    continue
                outcomes.append((None, exc))
            except Exception as exc:
                outcomes.append((None, exc))
            break
    return outcomes


class _Open:
    """The live parts of an opened store."""

    def __init__(
        self, writer: _Thread, reader: _Thread, writes: _Batcher, reads: _Batcher, checkpointer: _Checkpointer | None
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.writes = writes
        self.reads = reads
        self.checkpointer = checkpointer
        self.purger: asyncio.Task[None] | None = None
        self.loop = asyncio.get_running_loop()  # its batchers' tasks run there

    def stop(self) -> None:
        """Stop its threads (each closes its connection) without awaiting anything."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.writer.stop()
        if self.reader is not self.writer:
            self.reader.stop()


# ---------------------------------------------------------------- the store


class SQLiteStore:
    """A ``Store`` on one SQLite database file, shared safely by any number of processes.

    Connects lazily on first use (``open_store`` is synchronous). ``clock`` supplies "now"
    for every expiry comparison (tests inject a fake one).
    """

    def __init__(self, options: SQLiteOptions, *, clock: Clock = time.time) -> None:
        self.options = options
        self._clock = clock
        self._init_lock = asyncio.Lock()
        self._open: _Open | None = None
        self._open_at_fork = False
        _STORES.add(self)

    @property
    def path(self) -> str:
        return self.options.path

    # ------------------------------------------------------------- connections (on their threads)
    def _connect(self) -> Conn:
        conn = sqlite3.connect(self.options.path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.options.busy_timeout_ms)}")
            conn.execute(f"PRAGMA synchronous = {self.options.synchronous}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_writer(self) -> Conn:
        attempt = 0
        while True:
            conn = self._connect()
            try:
                self._migrate(conn)
                # Commits leave checkpoints to the checkpointer's thread (module docstring).
                conn.execute(f"PRAGMA wal_autocheckpoint = {_WRITER_CHECKPOINT_PAGES}")
                # The first commit after the WAL restarts truncates the file to this size.
                conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
                return conn
            except sqlite3.Error as exc:
                conn.close()
                if _is_busy(exc) and attempt < self.options.retries:
                    attempt += 1
                    time.sleep(_jitter(attempt))
                    continue
                raise
            except BaseException:
                conn.close()
                raise

    def _open_reader(self) -> Conn:
        conn = self._connect()
        try:
            conn.execute("PRAGMA query_only = 1")  # this connection only ever reads
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _schema_version(conn: Conn) -> int:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        if not conn.execute(sql).fetchall():
            return 0
        return int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)

    def _migrate(self, conn: Conn) -> None:
        # WAL: readers never block the writer; the mode persists in the file.
        if not self.options.in_memory and conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        current = self._schema_version(conn)
        if current == SCHEMA_VERSION:
            return  # the common case takes no write lock
        # BEGIN IMMEDIATE: several processes may open a fresh file at once; one migrates.
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = self._schema_version(conn)
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.options.path}: schema version {current} is newer than this "
                    f"attesto-asgi-sqlite ({SCHEMA_VERSION}); upgrade the package"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version - 1]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                log.info("%s: schema migrated to version %d", self.options.path, version)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise

    def _write_batch(self, conn: Conn, ops: Sequence[Op]) -> list[Outcome]:
        outcomes = _write_batch(conn, ops, self.options.retries)
        opened = self._open
        if opened is not None and opened.checkpointer is not None:
            opened.checkpointer.committed()
        return outcomes

    def _read_batch(self, conn: Conn, ops: Sequence[Op]) -> list[Outcome]:
        return _read_batch(conn, ops, self.options.retries)

    # ------------------------------------------------------------- opening and running
    async def _opened(self) -> _Open:
        opened = self._open
        if opened is not None:
            if opened.loop is asyncio.get_running_loop():
                return opened
            self._left_behind(opened)
        if self._open_at_fork:
            raise StoreUnavailable(
                f"sqlite store {self.options.path!r} was open when this process forked: open the store in "
                "each worker (after the fork), not in the parent"
            )
        try:
            return await self._start()
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"sqlite store {self.options.path!r} cannot be opened: {exc}") from exc

    def _left_behind(self, opened: _Open) -> None:
        """The store was opened on an event loop that is not the running one (``asyncio.run``
        called again, a loop per test): its batchers' tasks died with that loop and nothing
        of it can be awaited. Its threads stop and the store opens again on this loop. Two
        loops running at once cannot share one store."""
        if opened.loop.is_running():
            raise RuntimeError(f"sqlite store {self.options.path!r} is in use on another running event loop")
        self._open = None
        self._init_lock = asyncio.Lock()
        opened.stop()

    def _forked(self) -> None:
        """In a forked child of a process that had the store open: the parent's threads do not
        exist here, its connections must not be used (nor closed: SQLite forbids carrying one
        across ``fork``), and one of those threads may have held an SQLite lock at the fork,
        so a new connection here can wait forever (seen: ``sqlite3.connect`` hanging in the
        child after the checkpointer ran). The store fails fast instead, with the reason."""
        if self._open is not None:
            _INHERITED.append(self._open)
            self._open = None
            self._open_at_fork = True

    async def _start(self) -> _Open:
        async with self._init_lock:
            if self._open is not None:
                return self._open
            writer = _Thread("attesto-sqlite-writer", self._open_writer)
            reader = writer  # each :memory: connection is its own database: one connection
            checkpointer: _Checkpointer | None = None  # and it has no WAL
            try:
                await writer.call(_connected)  # connect and migrate now: failures surface here
                if not self.options.in_memory:
                    reader = _Thread("attesto-sqlite-reader", self._open_reader)
                    await reader.call(_connected)
                    checkpointer = _Checkpointer(self._connect, self.options.path)
            except BaseException:
                writer.stop()
                if reader is not writer:
                    reader.stop()
                raise
            path, size = self.options.path, self.options.batch
            opened = _Open(
                writer,
                reader,
                writes=_Batcher("attesto-sqlite-writes", writer, self._write_batch, max_batch=size, path=path),
                reads=_Batcher("attesto-sqlite-reads", reader, self._read_batch, max_batch=size, path=path),
                checkpointer=checkpointer,
            )
            opened.purger = asyncio.get_running_loop().create_task(self._purge_loop())
            self._open = opened
            return opened

    async def _write(self, op: Callable[[Conn], T]) -> T:
        """Run ``op`` on the writer's connection inside the next batch's transaction (its own
        savepoint); its result once that batch committed. ``op`` runs on the writer thread."""
        return await (await self._opened()).writes.submit(op)

    async def _read(self, op: Callable[[Conn], T]) -> T:
        """Run ``op`` on the reader's connection (autocommit: it sees every committed write)."""
        return await (await self._opened()).reads.submit(op)

    async def _on_writer(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` on the writer's connection between batches (tests and diagnostics)."""
        return await (await self._opened()).writer.call(fn)

    async def _fetch(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        """A read: the rows of one ``SELECT``."""
        return await self._read(lambda conn: conn.execute(sql, params).fetchall())

    async def _exec(self, sql: str, params: Mapping[str, Any]) -> None:
        """A write of one statement, in the next batch."""
        await self._returning(sql, params)

    async def _returning(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        """A write of one statement, in the next batch: the rows it returned."""
        return await self._write(lambda conn: conn.execute(sql, params).fetchall())

    # ------------------------------------------------------------- replay cache
    async def claim_once(self, key: str, ttl: float) -> bool:
        now = self._clock()
        rows = await self._returning(_CLAIM, {"k": key, "until": now + ttl, "now": now})
        return bool(rows)

    # ------------------------------------------------------------- families
    async def revoke_family(self, family_id: str, until: float) -> bool:
        nonce = secrets.token_hex(8)
        params = {"f": family_id, "until": until, "nonce": nonce, "now": self._clock()}
        rows = await self._returning(_REVOKE_FAMILY, params)
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
        # The trigger codes_tombstone drops the record of the take that redeemed it.
        rows = await self._returning(_TAKE_CODE, {"h": code_hash, "now": self._clock()})
        return _take_result(rows[0]) if rows else None

    # ------------------------------------------------------------- refresh tokens
    async def put_refresh(self, record: RefreshRecord) -> bool:
        return bool(await self._returning(_PUT_REFRESH, _refresh_params(record, self._clock())))

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
        insert = {
            "f": family_id,
            "h": successor.token_hash,
            "record": _encode(successor),
            "expires_at": successor.expires_at,
        }

        def op(conn: Conn) -> tuple[bool, Any]:
            # One operation: mark the old token and store the successor, or neither.
            won = conn.execute(_MARK_ROTATED, mark).fetchall()
            if won:
                conn.execute(_INSERT_SUCCESSOR, insert)
                return True, won[0][0]
            return False, conn.execute(_WHY_NOT_ROTATED, key).fetchone()

        rotated, row = await self._write(op)
        if rotated:
            return Rotated(record=_refresh_from_row(row, None, None, None))
        return _why_not_rotated(family_id, row)

    # ------------------------------------------------------------- housekeeping
    async def purge(self) -> int:
        """Delete expired rows in small batches; the number of rows changed."""
        total = 0
        for sql in _PURGES:
            while True:
                params = {"now": self._clock(), "n": _PURGE_BATCH}
                changed = await self._write(_changes(sql, params))
                total += changed
                if changed < _PURGE_BATCH:
                    break
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
        return await self._read(lambda conn: "\n".join(conn.iterdump()).encode())

    async def aclose(self) -> None:
        """Stop the purger; run and answer every operation already queued; close the
        connections. A call made while the store closes waits for it, then opens the store
        again (as any call after ``aclose`` does); one still waiting for room in a full
        queue fails with ``StoreUnavailable``."""
        async with self._init_lock:
            opened, self._open = self._open, None
            if opened is None:
                return
            if opened.purger is not None:
                opened.purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await opened.purger
            await opened.writes.close()
            await opened.reads.close()
            if opened.checkpointer is not None:
                opened.checkpointer.stop()
            await opened.writer.close()
            if opened.reader is not opened.writer:
                await opened.reader.close()


# Every store of this process, to tell in a forked child which were open at the fork (a
# server that forks its workers after using the store, e.g. a pre-fork warm-up), and what the
# parent had open, kept (never used, never closed) in the child.
_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
_INHERITED: list[_Open] = []


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        store._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _connected(conn: Conn) -> None:
    """A call that only makes the thread open its connection."""


def _changes(sql: str, params: Mapping[str, Any]) -> Callable[[Conn], int]:
    def op(conn: Conn) -> int:
        return conn.execute(sql, params).rowcount

    return op


def open_sqlite_store(url: str) -> SQLiteStore:
    """Entry point ``sqlite``: ``open_store("sqlite:///attesto.db")``."""
    return SQLiteStore(parse_sqlite_url(url))

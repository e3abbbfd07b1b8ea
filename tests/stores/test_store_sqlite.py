"""The SQLite store: the conformance suite on a real file and on :memory:, plus what only
SQLite has (URL, schema migration, WAL, purge, SQLITE_BUSY handling)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from attesto_asgi_sqlite import SCHEMA_VERSION, SQLiteOptions, SQLiteStore, parse_sqlite_url
from attesto_asgi_sqlite import _store as sqlite_impl
from attesto_asgi_sqlite._store import _MIGRATIONS, _WRITER_CHECKPOINT_PAGES, _Checkpointer

from attesto_asgi import StoreUnavailable, open_store
from attesto_asgi.model import AlreadyRotated, CodeRecord, CodeReused, Rotated
from attesto_asgi.store import Store
from attesto_asgi.testing import StoreContract, StoreFactory
from attesto_asgi.testing.store_contract import LONG, ContractClock, make_code, make_refresh, successor_of


def _store(path: Path | str, clock: Callable[[], float] | None = None, **opts: object) -> SQLiteStore:
    options = SQLiteOptions(path=str(path), **opts)  # type: ignore[arg-type]
    return SQLiteStore(options, clock=clock) if clock is not None else SQLiteStore(options)


class TestSQLiteFile(StoreContract):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> StoreFactory:
        path = tmp_path / "attesto.db"
        return lambda clock: _store(path, clock)

    async def dump_raw(self, store: Store) -> bytes:
        assert isinstance(store, SQLiteStore)
        # The file itself, its write-ahead log and index: everything SQLite wrote to disk.
        files = [Path(store.path + suffix) for suffix in ("", "-wal", "-shm")]
        return b"".join(f.read_bytes() for f in files if f.exists())


class TestSQLiteMemory(StoreContract):
    durable = False

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        # A :memory: database lives in its one connection: every peer is the same store.
        made: list[SQLiteStore] = []

        def factory(clock: Callable[[], float]) -> Store:
            if not made:
                made.append(_store(":memory:", clock))
            return made[0]

        return factory

    async def dump_raw(self, store: Store) -> bytes:
        assert isinstance(store, SQLiteStore)
        return await store.dump()


# -------------------------------------------------------------------- URL


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///attesto.db", "attesto.db"),
        ("sqlite:///data/attesto.db", "data/attesto.db"),
        ("sqlite:////var/lib/attesto.db", "/var/lib/attesto.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_url_paths(url: str, path: str) -> None:
    assert parse_sqlite_url(url).path == path


def test_url_options() -> None:
    opts = parse_sqlite_url("sqlite:///a.db?busy_timeout=50&retries=1&synchronous=normal&batch=2&purge_interval=5")
    assert opts == SQLiteOptions(
        path="a.db", busy_timeout_ms=50, retries=1, synchronous="NORMAL", batch=2, purge_interval=5.0
    )
    assert parse_sqlite_url("sqlite:///a.db").synchronous == "FULL"  # durable by default


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://host/a.db",
        "sqlite://",
        "sqlite:///a.db?nope=1",
        "sqlite:///a.db?synchronous=off",
        "sqlite:///a.db?batch=0",
        "redis:///a.db",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_sqlite_url(url)


async def test_open_store_finds_the_sqlite_backend(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/x.db")
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == f"{tmp_path}/x.db"
        assert await store.claim_once("k", 60) is True
    finally:
        await store.aclose()
    assert (tmp_path / "x.db").exists()


# -------------------------------------------------------------------- schema


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=5)


async def test_schema_is_created_once_by_concurrent_first_openers(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    stores = [_store(path) for _ in range(4)]
    try:
        # Four stores open a fresh file at the same moment; one migrates, all work.
        results = await asyncio.gather(*(s.claim_once(f"k{i}", 60) for i, s in enumerate(stores)))
        assert results == [True] * 4
    finally:
        for s in stores:
            await s.aclose()
    with _raw(path) as db:
        # Each migration ran exactly once.
        versions = db.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"codes", "refresh", "families", "revoked_access_tokens", "claims"} <= tables
        assert "access_tokens" not in tables


async def test_a_version_1_file_is_migrated_and_keeps_its_state(tmp_path: Path) -> None:
    """A file written by the first release (schema 1, with the jti -> family index that
    access tokens no longer need) opens, migrates, and keeps every grant state it held."""
    path = tmp_path / "v1.db"
    clock = ContractClock(controllable=True)
    now = clock()
    code = make_code(now)
    rt = make_refresh(now)
    fam, revoked_jti, recorded_jti = "fam-revoked", "jti-revoked", "jti-recorded"
    (v1,) = _MIGRATIONS[:1]
    with _raw(path) as db:
        # Exactly what schema 1 created, and rows as version 1 wrote them.
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("BEGIN IMMEDIATE")
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in v1:
            db.execute(statement)
        db.execute("INSERT INTO schema_version (version) VALUES (1)")
        db.execute(
            "INSERT INTO codes (code_hash, record, family_id, client_id, expires_at, keep_until)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (code.code_hash, msgspec.msgpack.encode(code), code.family_id, code.client_id, code.expires_at,
             code.reuse_detect_until),
        )  # fmt: skip
        db.execute(
            "INSERT INTO refresh (family_id, token_hash, record, expires_at) VALUES (?, ?, ?, ?)",
            (rt.family_id, rt.token_hash, msgspec.msgpack.encode(rt), rt.expires_at),
        )
        db.execute("INSERT INTO families VALUES (?, ?, ?)", (fam, now + LONG, "nonce"))
        db.execute("INSERT INTO access_tokens VALUES (?, ?, ?)", (recorded_jti, fam, now + 900))
        db.execute("INSERT INTO revoked_access_tokens VALUES (?, ?)", (revoked_jti, now + 900))
        db.execute("COMMIT")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "access_tokens" in tables
    store = _store(path, clock)
    try:
        assert await store.access_token_revoked(revoked_jti, None) is True
        assert await store.access_token_revoked(recorded_jti, fam) is True  # by its fid now
        assert await store.access_token_revoked(recorded_jti, None) is False
        assert await store.family_revoked(fam) is True
        assert await store.take_code(code.code_hash) == code
        assert await store.get_refresh(rt.family_id, rt.token_hash) == rt
        assert isinstance(await store.rotate_refresh(rt.family_id, rt.token_hash, successor_of(rt, now), None), Rotated)
        await store.purge()  # no purge statement names the dropped table
    finally:
        await store.aclose()
    with _raw(path) as db:
        versions = db.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert "access_tokens" not in names
        assert "access_tokens_expires_at" not in names
        # Version 3: codes and refresh tokens in rowid tables, keyed by a unique index.
        assert not names & {"codes_v3", "refresh_v3"}
        for table, key in (("codes", "codes_key"), ("refresh", "refresh_key")):
            sql = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
            assert "WITHOUT ROWID" not in sql.upper()
            unique = {row[1] for row in db.execute(f"PRAGMA index_list({table})") if row[2]}
            assert key in unique
    # Reopening the migrated file migrates nothing more.
    again = _store(path, clock)
    try:
        assert await again.family_revoked(fam) is True
    finally:
        await again.aclose()


@pytest.mark.parametrize(
    ("statement", "index"),
    [
        ("_TAKE_CODE", "codes_key"),
        ("_GET_REFRESH", "refresh_key"),
        ("_MARK_ROTATED", "refresh_key"),
        ("_WHY_NOT_ROTATED", "refresh_key"),
    ],
)
async def test_hot_statements_find_their_row_by_the_key_index(tmp_path: Path, statement: str, index: str) -> None:
    """No statement on the request path scans a table: each finds its row through the key."""
    path = tmp_path / "plan.db"
    store = _store(path)
    try:
        await store.claim_once("create", 60)
    finally:
        await store.aclose()
    sql = getattr(sqlite_impl, statement)
    params = {"h": "h", "f": "f", "now": 0.0, "successor_hash": None, "sealed": None}
    with _raw(path) as db:
        steps = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    assert any(f"USING INDEX {index}" in step for step in steps)
    # The only scans allowed: of a constant row, and of _WHY_NOT_ROTATED's one-row ``one``.
    assert {step.split()[1] for step in steps if step.startswith("SCAN")} <= {"CONSTANT", "one"}, steps


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with _raw(path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    store = _store(path)
    try:
        with pytest.raises(RuntimeError, match="newer"):
            await store.claim_once("k", 60)
    finally:
        await store.aclose()


async def test_unopenable_database_is_store_unavailable(tmp_path: Path) -> None:
    store = _store(tmp_path / "no" / "such" / "dir" / "x.db")
    try:
        with pytest.raises(StoreUnavailable):
            await store.claim_once("k", 60)
    finally:
        await store.aclose()


# -------------------------------------------------------------------- busy database


async def test_busy_database_is_store_unavailable_and_nothing_applies(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    clock = ContractClock(controllable=True)
    store = _store(path, clock, busy_timeout_ms=30, retries=2)
    try:
        old = make_refresh(clock())
        await store.put_refresh(old)
        succ = successor_of(old, clock())
        blocker = _raw(path)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with pytest.raises(StoreUnavailable):
                await store.rotate_refresh(old.family_id, old.token_hash, succ, None)
            with pytest.raises(StoreUnavailable):
                await store.claim_once("jti-1", 60)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # Neither attempt applied: the token rotates now, and the jti is still unclaimed.
        assert await store.rotate_refresh(old.family_id, old.token_hash, succ, None) == Rotated(record=old)
        assert await store.claim_once("jti-1", 60) is True
    finally:
        await store.aclose()


async def test_short_busy_spell_is_retried_not_failed(tmp_path: Path) -> None:
    path = tmp_path / "spell.db"
    store = _store(path, busy_timeout_ms=20, retries=5)
    try:
        await store.claim_once("warm-up", 60)
        blocker = _raw(path)
        blocker.execute("BEGIN IMMEDIATE")
        loop = asyncio.get_running_loop()

        def release() -> None:
            blocker.execute("ROLLBACK")
            blocker.close()

        loop.call_later(0.04, release)
        # The lock outlives one busy_timeout but not the bounded retries.
        assert await store.claim_once("jti-2", 60) is True
    finally:
        await store.aclose()


async def test_cancelled_rotation_leaves_no_open_transaction(tmp_path: Path) -> None:
    path = tmp_path / "cancel.db"
    clock = ContractClock(controllable=True)
    store = _store(path, clock)
    try:
        rt = make_refresh(clock())
        await store.put_refresh(rt)
        for _ in range(5):
            task = asyncio.ensure_future(
                store.rotate_refresh(rt.family_id, rt.token_hash, successor_of(rt, clock()), None)
            )
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The (only) connection came back clean: another process can take the write lock.
            assert await store.claim_once("after-cancel", 0.001) in (True, False)
            other = _raw(path)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
            finally:
                other.close()
    finally:
        await store.aclose()


# -------------------------------------------------------------------- purge


def _count(path: Path, table: str) -> int:
    with _raw(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_purge_drops_expired_rows_only(tmp_path: Path) -> None:
    path = tmp_path / "purge.db"
    clock = ContractClock(controllable=True)
    store = _store(path, clock)
    try:
        fam = "fam-1"
        short_code = make_code(clock(), ttl=10, reuse_margin=0)
        taken = make_code(clock(), ttl=10, reuse_margin=100)
        await store.put_code(short_code)
        await store.put_code(taken)
        await store.take_code(taken.code_hash)
        await store.put_refresh(make_refresh(clock(), family_id=fam, ttl=10))
        live = make_refresh(clock(), family_id=fam, ttl=1000)
        await store.put_refresh(live)
        await store.revoke_family("fam-2", clock() + 10)
        await store.revoke_access_token("jti-b", clock() + 10)
        await store.claim_once("claim", 10)
        with _raw(path) as db:  # the take that redeemed it dropped the record: a tombstone
            assert db.execute("SELECT record FROM codes WHERE code_hash = ?", (taken.code_hash,)).fetchone() == (None,)
        await clock.advance(11)
        removed = await store.purge()
        # short code, expired refresh, family marker, revoked jti, claim.
        assert removed == 5
        assert _count(path, "codes") == 1
        assert _count(path, "refresh") == 1
        for table in ("families", "revoked_access_tokens", "claims"):
            assert _count(path, table) == 0
        with _raw(path) as db:
            assert db.execute("SELECT record FROM codes").fetchone() == (None,)
        # The tombstone still reports reuse; the live token is untouched.
        assert await store.take_code(taken.code_hash) == CodeReused(
            family_id=taken.family_id, client_id=taken.client_id
        )
        assert await store.get_refresh(fam, live.token_hash) == live
        assert await store.purge() == 0
    finally:
        await store.aclose()


async def test_purge_runs_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "bg.db"
    store = _store(path, purge_interval=0.05)
    try:
        for i in range(600):  # more than one purge batch
            await store.claim_once(f"k{i}", 0.01)
        assert _count(path, "claims") > 0
        for _ in range(100):
            await asyncio.sleep(0.05)
            if _count(path, "claims") == 0:
                break
        assert _count(path, "claims") == 0
    finally:
        await store.aclose()


# -------------------------------------------------------------------- checkpoints


def _wal_index(path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames already copied back into the database file), read from the
    wal-index without opening a connection (a connection could checkpoint): ``mxFrame`` at
    byte 16 of its header, ``nBackfill`` at byte 96, native byte order
    (https://www.sqlite.org/walformat.html, "The WAL-Index Format")."""
    head = Path(f"{path}-shm").read_bytes()[:100]
    (frames,) = struct.unpack_from("=I", head, 16)
    (copied,) = struct.unpack_from("=I", head, 96)
    return frames, copied


def _fully_copied(path: Path) -> bool:
    frames, copied = _wal_index(path)
    return frames > 0 and copied == frames


async def _soon(condition: Callable[[], bool], what: str) -> None:
    """Wait for what another thread does (the checkpointer), polling; bounded at 5 s."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} did not happen")


def _file_size(path: Path) -> int:
    return path.stat().st_size


async def _put_refresh_batch(store: SQLiteStore, n: int = 64) -> None:
    now = store._clock()
    assert all(await asyncio.gather(*(store.put_refresh(make_refresh(now)) for _ in range(n))))


def _checkpointer(store: SQLiteStore) -> _Checkpointer:
    assert store._open is not None
    assert store._open.checkpointer is not None
    return store._open.checkpointer


async def _stop_checkpointer(store: SQLiteStore) -> None:
    await store.claim_once("open", 60)
    checkpointer = _checkpointer(store)
    checkpointer.stop()
    await asyncio.to_thread(checkpointer._thread.join, 30)


async def test_commits_leave_checkpoints_to_the_checkpointer_up_to_the_backstop(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    store = _store(path)
    try:
        await _stop_checkpointer(store)
        await _put_refresh_batch(store)  # (restarts the WAL if the checkpointer emptied it)
        grew_to, copied_before = _wal_index(path)
        for _ in range(400):
            await _put_refresh_batch(store)
            frames, copied = _wal_index(path)
            if copied != copied_before or frames < grew_to:  # the writer checkpointed
                break
            grew_to = frames
        else:
            raise AssertionError("the writer never checkpointed")
        # Past SQLite's default of 1,000 pages the commits went on without a checkpoint; the
        # writer took one only past the backstop, so a saturated writer still bounds the WAL.
        assert grew_to >= max(2000, _WRITER_CHECKPOINT_PAGES - 500)
    finally:
        await store.aclose()


async def test_the_checkpointer_copies_the_wal_back_and_the_wal_starts_again(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    store = _store(path)
    try:
        for _ in range(20):
            await _put_refresh_batch(store)
        checkpointer = _checkpointer(store)
        await _soon(lambda: _fully_copied(path), "copying the WAL back")
        frames, _ = _wal_index(path)
        assert checkpointer.runs >= 1
        # Every frame copied: the next write transaction starts the WAL from its beginning.
        await store.claim_once("after", 60)
        assert _wal_index(path)[0] < frames
    finally:
        await store.aclose()


async def test_a_pinned_reader_neither_blocks_commits_nor_spins_the_checkpointer(tmp_path: Path) -> None:
    """A long read transaction elsewhere keeps PASSIVE from copying the frames it may still
    read: commits go on, and the checkpointer runs about once per commit, not in a loop."""
    path = tmp_path / "wal.db"
    store = _store(path)
    try:
        await _put_refresh_batch(store)
        reader = sqlite3.connect(path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM refresh").fetchone()  # a snapshot, held
            checkpointer = _checkpointer(store)
            runs_before = checkpointer.runs
            for _ in range(10):
                await _put_refresh_batch(store, 16)
            frames, copied = _wal_index(path)
            assert copied < frames  # the pinned frames were not copied back
            await asyncio.sleep(0.2)  # 40 pauses' worth: a spinning checkpointer would run hundreds of times
            assert checkpointer.runs - runs_before <= 4 * 10  # at most one per commit (a few per batch call)
            reader.execute("COMMIT")
        finally:
            reader.close()
        await _put_refresh_batch(store, 1)  # the snapshot gone, the next run copies everything
        await _soon(lambda: _fully_copied(path), "copying the WAL back")
    finally:
        await store.aclose()


async def test_the_wal_file_shrinks_after_a_burst(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst (a migration copying a table) may grow the WAL file far past what a steady
    load needs; once the log restarts, the next commit truncates the file to the limit."""
    monkeypatch.setattr(sqlite_impl, "_WAL_SIZE_LIMIT", 64 * 1024)
    path = tmp_path / "wal.db"
    wal = Path(f"{path}-wal")
    store = _store(path)
    try:
        await _stop_checkpointer(store)
        for _ in range(10):
            await _put_refresh_batch(store)
        grown = _file_size(wal)
        assert grown > 4 * 64 * 1024
        with _raw(path) as db:  # everything copied back: the next write restarts the log
            busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            assert (busy, copied) == (0, frames)
        await store.claim_once("restarts the log", 60)
        assert _file_size(wal) <= 64 * 1024
    finally:
        await store.aclose()


async def test_a_failing_checkpoint_is_logged_and_tried_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "wal.db"
    store = _store(path)
    await _put_refresh_batch(store)  # the file, in WAL mode, with frames to copy
    attempts: list[int] = []

    def connect() -> sqlite3.Connection:
        attempts.append(1)
        if len(attempts) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return sqlite3.connect(path, isolation_level=None)

    checkpointer = _Checkpointer(connect, str(path), pause=0)
    try:
        with caplog.at_level(logging.WARNING, logger="attesto_asgi.sqlite"):
            checkpointer.committed()
            await _soon(lambda: "checkpoint failed" in caplog.text, "logging the failed checkpoint")
            assert "checkpoint failed: disk I/O error" in caplog.text
            assert checkpointer.runs == 0
            await _put_refresh_batch(store)  # the store's writes go on meanwhile
            checkpointer.committed()
            await _soon(lambda: checkpointer.runs > 0, "a checkpoint after the failed one")
            assert checkpointer.runs >= 1
            assert len(attempts) == 2
    finally:
        checkpointer.stop()
        await store.aclose()


# -------------------------------------------------------------------- group commit


class Trace:
    """Every statement the writer's connection runs, from sqlite3's trace callback (called
    on the writer thread as each statement starts). ``hold_commits`` stops the writer at its
    next ``COMMIT`` until ``release``: a batch caught in flight, without a timer."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.at_commit = threading.Event()
        self._released = threading.Event()
        self._released.set()

    def __call__(self, sql: str) -> None:
        self.statements.append(" ".join(sql.split()).upper())
        if self.statements[-1] == "COMMIT" and not self._released.is_set():
            self.at_commit.set()
            self._released.wait(30)  # a guard against a hung test, not a measurement

    def count(self, statement: str) -> int:
        return self.statements.count(statement)

    def batches(self) -> list[int]:
        """Operations (savepoints) per transaction, in order."""
        sizes: list[int] = []
        for sql in self.statements:
            if sql == "BEGIN IMMEDIATE":
                sizes.append(0)
            elif sql == "SAVEPOINT OP":
                sizes[-1] += 1
        return sizes

    def hold_commits(self) -> None:
        self.at_commit.clear()
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    async def held(self) -> None:
        """Wait (off the event loop) until the writer is held at a COMMIT."""
        assert await asyncio.to_thread(self.at_commit.wait, 30)


async def traced(store: SQLiteStore) -> Trace:
    trace = Trace()
    await store._on_writer(lambda conn: conn.set_trace_callback(trace))
    return trace


async def until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until ``condition`` holds (bounded in loop turns, not time)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def _pending(store: SQLiteStore) -> int:
    assert store._open is not None
    return store._open.writes.pending


async def test_concurrent_writes_commit_in_shared_transactions(tmp_path: Path) -> None:
    store = _store(tmp_path / "group.db", batch=10)
    try:
        await store.claim_once("warm-up", 60)
        trace = await traced(store)
        claimed = await asyncio.gather(*(store.claim_once(f"k{i}", 60) for i in range(50)))
        assert claimed == [True] * 50
        # 50 operations, fewer transactions, none larger than the batch limit; one COMMIT each.
        sizes = trace.batches()
        assert sum(sizes) == 50
        assert 5 <= len(sizes) < 50
        assert max(sizes) <= 10
        assert trace.count("COMMIT") == len(sizes)
        assert await asyncio.gather(*(store.claim_once(f"k{i}", 60) for i in range(50))) == [False] * 50
    finally:
        await store.aclose()


async def test_operations_in_one_batch_see_each_other(tmp_path: Path) -> None:
    clock = ContractClock(controllable=True)
    store = _store(tmp_path / "see.db", clock)
    try:
        code = make_code(clock())
        rt = make_refresh(clock())
        await store.put_code(code)
        await store.put_refresh(rt)
        trace = await traced(store)
        succ_a, succ_b = successor_of(rt, clock()), successor_of(rt, clock())
        late = make_refresh(clock(), family_id="fam-late")
        answers = await asyncio.gather(
            store.take_code(code.code_hash),
            store.take_code(code.code_hash),
            store.rotate_refresh(rt.family_id, rt.token_hash, succ_a, None),
            store.rotate_refresh(rt.family_id, rt.token_hash, succ_b, None),
            store.claim_once("jti", 60),
            store.claim_once("jti", 60),
            store.revoke_family("fam-late", clock() + 60),
            store.put_refresh(late),
        )
        assert trace.batches() == [8]  # one transaction
        assert answers[0] == code
        assert answers[1] == CodeReused(family_id=code.family_id, client_id=code.client_id)
        assert answers[2] == Rotated(record=rt)
        assert isinstance(answers[3], AlreadyRotated)
        assert answers[3].record.successor_hash == succ_a.token_hash
        assert answers[4:] == [True, False, True, False]
    finally:
        await store.aclose()


async def test_a_failing_operation_rolls_back_alone(tmp_path: Path) -> None:
    path = tmp_path / "alone.db"
    store = _store(path)
    try:
        await store.claim_once("warm-up", 60)
        trace = await traced(store)

        def half_then_sql_error(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO claims (key, until) VALUES ('half-sql', 1e12)")
            conn.execute("INSERT INTO no_such_table VALUES (1)")

        def half_then_bug(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO claims (key, until) VALUES ('half-bug', 1e12)")
            raise ValueError("a bug in the operation")

        answers = await asyncio.gather(
            store.claim_once("before", 60),
            store._write(half_then_sql_error),
            store._write(half_then_bug),
            store.claim_once("after", 60),
            return_exceptions=True,
        )
        assert trace.batches() == [4]
        assert answers[0] is True
        assert isinstance(answers[1], StoreUnavailable)
        assert isinstance(answers[2], ValueError)
        assert answers[3] is True
        with _raw(path) as db:
            keys = {r[0] for r in db.execute("SELECT key FROM claims")}
        assert keys == {"warm-up", "before", "after"}
    finally:
        await store.aclose()


async def test_a_failing_commit_fails_its_whole_batch_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "commit.db"
    clock = ContractClock(controllable=True)
    store = _store(path, clock)
    try:
        await store.claim_once("warm-up", 60)
        # A deferred foreign key is checked at COMMIT only: a real commit that SQLite refuses.
        with _raw(path) as db:
            db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            db.execute("CREATE TABLE child (parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")
        await store._on_writer(lambda conn: conn.execute("PRAGMA foreign_keys = ON"))
        trace = await traced(store)
        code = make_code(clock())
        rt = make_refresh(clock())
        answers = await asyncio.gather(
            store.claim_once("jti", 60),
            store.put_code(code),
            store.put_refresh(rt),
            store._write(lambda conn: conn.execute("INSERT INTO child VALUES (1)")),
            store.revoke_family("fam-x", clock() + 60),
            return_exceptions=True,
        )
        assert trace.batches() == [5]
        assert trace.count("COMMIT") == 1
        assert all(isinstance(a, StoreUnavailable) for a in answers), answers
        # Nothing of the batch is in the database.
        assert await store.claim_once("jti", 60) is True
        assert await store.take_code(code.code_hash) is None
        assert await store.get_refresh(rt.family_id, rt.token_hash) is None
        assert await store.family_revoked("fam-x") is False
        assert _count(path, "child") == 0
    finally:
        await store.aclose()


async def test_busy_database_fails_a_whole_batch_and_nothing_applies(tmp_path: Path) -> None:
    path = tmp_path / "busy-batch.db"
    store = _store(path, busy_timeout_ms=20, retries=1)
    try:
        await store.claim_once("warm-up", 60)
        trace = await traced(store)
        blocker = _raw(path)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            answers = await asyncio.gather(*(store.claim_once(f"b{i}", 60) for i in range(5)), return_exceptions=True)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # One batch, tried twice (bounded), refused both times: every operation fails.
        assert trace.count("BEGIN IMMEDIATE") == 2
        assert all(isinstance(a, StoreUnavailable) for a in answers), answers
        assert await asyncio.gather(*(store.claim_once(f"b{i}", 60) for i in range(5))) == [True] * 5
    finally:
        await store.aclose()


async def test_cancelled_callers_and_their_operations(tmp_path: Path) -> None:
    store = _store(tmp_path / "cancel-batch.db")
    try:
        await store.claim_once("warm-up", 60)
        trace = await traced(store)
        trace.hold_commits()
        in_batch = asyncio.ensure_future(store.claim_once("in-batch", 60))
        await trace.held()  # its batch is at COMMIT
        queued = asyncio.ensure_future(store.claim_once("queued", 60))
        await until(lambda: _pending(store) == 1)
        in_batch.cancel()
        queued.cancel()
        trace.release()
        for task in (in_batch, queued):
            with pytest.raises(asyncio.CancelledError):
                await task
        # The operation already in a batch committed with it; the queued one never ran.
        assert await store.claim_once("in-batch", 60) is False
        assert await store.claim_once("queued", 60) is True
    finally:
        trace.release()
        await store.aclose()


async def test_queue_is_bounded(tmp_path: Path) -> None:
    store = _store(tmp_path / "bounded.db", batch=2)
    try:
        await store.claim_once("warm-up", 60)
        trace = await traced(store)
        trace.hold_commits()
        first = asyncio.ensure_future(store.claim_once("first", 60))
        await trace.held()
        tasks = [asyncio.ensure_future(store.claim_once(f"k{i}", 60)) for i in range(30)]
        assert store._open is not None
        assert store._open.writes.limit == 8  # 4 x batch, as documented
        await until(lambda: _pending(store) == 8)
        for _ in range(20):  # the other callers wait for room instead of queueing
            await asyncio.sleep(0)
        assert _pending(store) == 8
        trace.release()
        assert await first is True
        assert await asyncio.gather(*tasks) == [True] * 30
        assert max(trace.batches()) <= 2
    finally:
        trace.release()
        await store.aclose()


async def test_aclose_answers_the_queued_operations(tmp_path: Path) -> None:
    path = tmp_path / "drain.db"
    store = _store(path)
    try:
        await store.claim_once("warm-up", 60)
        trace = await traced(store)
        trace.hold_commits()
        in_batch = asyncio.ensure_future(store.claim_once("in-batch", 60))
        await trace.held()
        queued = [asyncio.ensure_future(store.claim_once(f"q{i}", 60)) for i in range(3)]
        await until(lambda: _pending(store) == 3)
        closing = asyncio.ensure_future(store.aclose())
        await until(lambda: store._open is None)
        trace.release()
        await closing
        assert await in_batch is True
        assert await asyncio.gather(*queued) == [True] * 3
    finally:
        trace.release()
        await store.aclose()
    reopened = _store(path)
    try:
        assert await reopened.claim_once("in-batch", 60) is False
        assert await asyncio.gather(*(reopened.claim_once(f"q{i}", 60) for i in range(3))) == [False] * 3
    finally:
        await reopened.aclose()


async def test_reads_do_not_wait_for_the_writer_and_see_only_commits(tmp_path: Path) -> None:
    clock = ContractClock(controllable=True)
    store = _store(tmp_path / "reader.db", clock)
    try:
        await store.claim_once("warm-up", 60)
        trace = await traced(store)
        trace.hold_commits()
        revoking = asyncio.ensure_future(store.revoke_family("fam-r", clock() + 60))
        await trace.held()
        # The writer is stuck at its COMMIT; a read still answers, from the last commit.
        assert await store.family_revoked("fam-r") is False
        trace.release()
        assert await revoking is True
        assert await store.family_revoked("fam-r") is True
    finally:
        trace.release()
        await store.aclose()


def test_the_store_serves_each_event_loop_it_is_used_on_in_turn(tmp_path: Path) -> None:
    # asyncio.run per test, a framework's own loop after a warm-up: the batchers of the first
    # loop died with it, and the store opens again on the next instead of failing for good.
    store = SQLiteStore(parse_sqlite_url(f"sqlite:///{tmp_path / 'loops.db'}"))
    now = time.time()
    codes = [make_code(now) for _ in range(3)]

    async def put() -> None:
        for code in codes:
            await store.put_code(code)

    asyncio.run(put())
    assert asyncio.run(store.take_code(codes[0].code_hash)) == codes[0]
    assert asyncio.run(store.take_code(codes[1].code_hash)) == codes[1]

    async def last() -> CodeRecord | CodeReused | None:
        try:
            return await store.take_code(codes[2].code_hash)
        finally:
            await store.aclose()

    assert asyncio.run(last()) == codes[2]


# Run in an interpreter of its own: forking a process with other threads (pytest-xdist's,
# other tests' stores) can leave the child waiting on a lock one of them held. Here the only
# threads are the store's own, idle when the parent forks.
_FORK_SCRIPT = """
import asyncio, os, sys, time
from attesto_asgi_sqlite import SQLiteStore, parse_sqlite_url
from attesto_asgi import StoreUnavailable
from attesto_asgi.testing.store_contract import make_code

store = SQLiteStore(parse_sqlite_url("sqlite:///" + sys.argv[1]))
code = make_code(time.time())
asyncio.run(store.put_code(code))
pid = os.fork()
if pid == 0:
    try:
        asyncio.run(store.take_code(code.code_hash))
        os._exit(3)
    except StoreUnavailable as exc:
        if "open when this process forked" not in str(exc):
            os._exit(4)
    os._exit(0)
for _ in range(600):
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    sys.exit("the child hung")
print("child", os.waitstatus_to_exitcode(status))
print("parent", type(asyncio.run(store.take_code(code.code_hash))).__name__)
"""


def test_a_store_open_at_a_fork_fails_fast_in_the_child(tmp_path: Path) -> None:
    # A server that forks its workers after using the store (a pre-fork warm-up): the child
    # must not use the parent's connections, and cannot safely connect either (a parent
    # thread may have held an SQLite lock at the fork): it answers StoreUnavailable with
    # the reason, never hangs, never touches the parent's state.
    done = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT, str(tmp_path / "fork.db")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["child", "0", "parent", "CodeRecord"]

"""``RedisStore``: the attesto-asgi ``Store`` on Redis (redis.asyncio, one connection pool).

Every state change is one Lua script or one native atomic command (LESSONS: "one Lua
script or GETDEL in Redis"). Every key carries a TTL: a record expires with the record
(``PEXPIREAT`` on its absolute expiry), so Redis drops expired state by itself.

Key layout (``P`` is the prefix; ``{...}`` is the Redis Cluster hash tag):

- ``P:code:<code_hash>``: hash ``r`` (record), ``f``/``c`` (family, client), ``u``
  (tombstone end, ms), ``t`` (taken). One key per script.
- ``{P:<family_id>}:rt:<token_hash>``: hash ``r`` (record as put) and, once rotated,
  ``ra`` (rotated_at), ``sh`` (successor hash), ``ss`` (sealed successor).
- ``{P:<family_id>}:revoked``: the family's sticky revoked marker.
- ``{P:jti:<jti>}:revoked``: one revoked access token. (An access token's family is not
  stored: the token carries it as its signed ``fid`` claim.)
- ``P:claim:<key>``: the replay cache.

A rotation reads the *existing* successor of an already rotated token by a key name it
builds from the stored hash; that key carries the same family hash tag, so it is in the
script's slot and Redis Cluster runs it unchanged. The one read that spans two slots (an
access token's revoked marker and its family's) is two single-key commands queued together,
so they share one pipeline's round trip.

Auto-pipelining: operations issued concurrently in one process are queued and go out as
non-transactional pipelines (at most ``_BATCH`` operations each) on pooled connections;
each caller is answered from its own reply. At most ``_PIPELINES`` pipelines are in flight
at once. A pipeline is written once a pipeline is free, when the turn of the event loop
that queued its operations ends (``_flush``) or, under load, as soon as the queue holds
``_EARLY`` operations and as many as each pipeline in flight (``_kick``), so that Redis
runs one pipeline while the event loop runs the callers of another; a task per pipeline
reads its replies. A lone operation (nothing queued or in flight, and the last
pipeline held one operation) waits for no batching delay and no task: its caller sends it
(``_send_alone``), counting as one pipeline in flight. At most ``_MAX_PENDING``
operations are queued or in flight (the rest wait, up to the pool timeout, then fail as
unavailable). Each script is atomic on its own in Redis;
a pipeline only shares the round trip, so every operation keeps its own semantics, its own
reply and its own error. The store always uses the standalone client (``redis.asyncio.Redis``),
also against a Redis Cluster node: a plain pipeline is one connection to one node.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import hiredis
import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

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

__all__ = ["RedisStore", "open_redis_store", "parse_redis_url"]

log = logging.getLogger("attesto_asgi.redis")

T = TypeVar("T")
Clock = Callable[[], float]

DEFAULT_PREFIX: Final = "attesto"

# The errors that mean "Redis could not be reached"; the outcome is unknown or not applied.
_UNREACHABLE: Final = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)

# Auto-pipelining bounds: operations per pipeline, pipelines in flight, operations queued
# or in flight at once.
_BATCH: Final = 128
_PIPELINES: Final = 2
# A pipeline goes out before the turn of the event loop that queued it ends only once it
# holds this many operations (a pipeline costs ~70 µs of CPU between client and server;
# over HTTP at c=16, writing every share at once cost 13% of the rotations a second).
_EARLY: Final = 16
_MAX_PENDING: Final = 1024
# NOSCRIPT recovery: rounds of "load the scripts, resend what got NOSCRIPT" per pipeline.
_NOSCRIPT_ROUNDS: Final = 2

# ---------------------------------------------------------------- scripts

_PUT_CODE: Final = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'u', ARGV[3], 'f', ARGV[4], 'c', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"""

# Taken once: the record is dropped, the key becomes a tombstone until reuse_detect_until.
_TAKE_CODE: Final = """
local v = redis.call('HMGET', KEYS[1], 'r', 'u', 'f', 'c', 't')
if not v[3] then return false end
if v[5] then return {'reused', v[3], v[4]} end
redis.call('HDEL', KEYS[1], 'r')
redis.call('HSET', KEYS[1], 't', '1')
redis.call('PEXPIREAT', KEYS[1], v[2])
return {'taken', v[1]}
"""

# Sticky: a live marker is only ever extended; the call that created it answers 1.
_REVOKE_UNTIL: Final = """
local exp = redis.call('PEXPIRETIME', KEYS[1])
if exp == -2 then
  redis.call('SET', KEYS[1], '1', 'PXAT', ARGV[1])
  return 1
end
if exp >= 0 and tonumber(ARGV[1]) > exp then redis.call('PEXPIREAT', KEYS[1], ARGV[1]) end
return 0
"""

_PUT_REFRESH: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'r', ARGV[1])
redis.call('PEXPIREAT', KEYS[2], ARGV[2])
return 1
"""

_GET_REFRESH: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
return redis.call('HMGET', KEYS[2], 'r', 'ra', 'sh', 'ss')
"""

# The compare-and-set: revoked family first, then unknown, then already rotated; else mark
# the old token and store the successor in the same script.
_ROTATE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'revoked'} end
local v = redis.call('HMGET', KEYS[2], 'r', 'ra', 'sh', 'ss')
if not v[1] then return {'unknown'} end
if v[2] then
  local succ = ARGV[7] .. v[3]
  local used = 0
  if redis.call('EXISTS', succ) == 0 or redis.call('HEXISTS', succ, 'ra') == 1 then used = 1 end
  local has_ss = 0
  if v[4] then has_ss = 1 end
  return {'already', v[1], v[2], v[3], v[4] or '', has_ss, used}
end
redis.call('HSET', KEYS[2], 'ra', ARGV[1], 'sh', ARGV[2])
if ARGV[3] == '1' then redis.call('HSET', KEYS[2], 'ss', ARGV[4]) end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 'r', ARGV[5])
redis.call('PEXPIREAT', KEYS[3], ARGV[6])
return {'rotated', v[1]}
"""

# ---------------------------------------------------------------- small pure helpers

_code_decoder: Final = msgspec.msgpack.Decoder(CodeRecord)
_refresh_decoder: Final = msgspec.msgpack.Decoder(RefreshRecord)
_encode: Final = msgspec.msgpack.encode
# One command in RESP, packed in C. (hiredis's stub types the command as a 1-tuple.)
_pack_command: Final[Callable[[tuple[EncodableT, ...]], bytes]] = hiredis.pack_command  # type: ignore[assignment]


def parse_redis_url(url: str) -> tuple[str, str]:
    """``(client_url, prefix)``: our ``prefix`` option taken out of the query string."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis URL: scheme {parts.scheme!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [v for k, v in query if k == "prefix"]
    prefix = prefixes[-1] if prefixes else DEFAULT_PREFIX
    if not prefix or any(c in prefix for c in "{}*?[] "):
        raise ValueError("redis prefix must be non-empty, without braces, glob characters or spaces")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def _ms(t: float) -> int:
    """Epoch seconds to the epoch milliseconds Redis expiry commands take."""
    return round(t * 1000)


def _family_tag(prefix: str, family_id: str) -> str:
    return "{" + prefix + ":" + family_id + "}"


def _refresh_prefix(prefix: str, family_id: str) -> str:
    return _family_tag(prefix, family_id) + ":rt:"


def _revoked_key(prefix: str, family_id: str) -> str:
    return _family_tag(prefix, family_id) + ":revoked"


def _jti_tag(prefix: str, jti: str) -> str:
    return "{" + prefix + ":jti:" + jti + "}"


def _refresh_record(fields: list[Any]) -> RefreshRecord | None:
    blob, rotated_at, successor_hash, sealed = fields
    if blob is None:
        return None
    record = _refresh_decoder.decode(blob)
    if rotated_at is None:
        return record
    return msgspec.structs.replace(
        record,
        rotated_at=float(rotated_at),
        successor_hash=successor_hash.decode(),
        sealed_successor=bytes(sealed) if sealed is not None else None,
    )


def _rotate_result(family_id: str, reply: list[Any]) -> RotateResult:
    kind = reply[0]
    if kind == b"rotated":
        return Rotated(record=_refresh_decoder.decode(reply[1]))
    if kind == b"revoked":
        return FamilyRevoked(family_id=family_id)
    if kind == b"unknown":
        return RefreshUnknown()
    _, blob, rotated_at, successor_hash, sealed, has_sealed, used = reply
    record = _refresh_record([blob, rotated_at, successor_hash, sealed if has_sealed else None])
    assert record is not None
    return AlreadyRotated(record=record, successor_used=bool(used))


def _write_early(queued: int, out: int, in_flight: int) -> bool:
    """Whether a free pipeline goes out before the event loop's turn ends: once the queue
    holds ``_EARLY`` operations and as many as each of the ``in_flight`` pipelines holds
    (``out`` operations in all), so that the load splits into even shares."""
    return queued >= _EARLY and queued * in_flight >= out


def _pipeline_size(queued: int, out: int, in_flight: int, pipelines: int, most: int) -> int:
    """How many queued operations the next pipeline takes (at most ``most``): all of them
    when none is in flight, else an even share of those queued and out, rounded up."""
    if not in_flight:
        return most
    return min(most, -(-(queued + out) // pipelines))


def _unavailable(exc: BaseException) -> StoreUnavailable:
    log.warning("redis store unavailable: %s", type(exc).__name__)
    err = StoreUnavailable(f"redis store unavailable: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


class _Op:
    """One queued command: its arguments, its caller's future, whether it may be resent."""

    __slots__ = ("command", "future", "retry")

    def __init__(self, command: tuple[EncodableT, ...], future: asyncio.Future[Any], retry: bool) -> None:
        self.command = command
        self.future = future
        self.retry = retry


# ---------------------------------------------------------------- the store


class RedisStore:
    """A ``Store`` on Redis. ``clock`` supplies ``rotated_at``; Redis keeps expiry itself."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = time.time,
        pipelines: int = _PIPELINES,
        batch: int = _BATCH,
    ) -> None:
        client_url, self.prefix = parse_redis_url(url)
        self._clock = clock
        # No automatic retries: a retried script whose first reply was lost would run twice
        # (a redemption would come back as a reuse report). Errors surface; we reconnect.
        # A blocking pool: a request finding every connection busy waits for one (at most
        # ``timeout``) instead of failing; redis-py's default pool raises MaxConnectionsError
        # past 100 connections, a 503 for any worker with over 100 requests in flight.
        pool = aioredis.BlockingConnectionPool.from_url(
            client_url,
            # Defaults; the URL's own socket_timeout / socket_connect_timeout / max_connections win.
            socket_connect_timeout=1.0,
            socket_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
            max_connections=64,
            timeout=2.0,
        )
        self.client: aioredis.Redis = aioredis.Redis.from_pool(pool)
        # The deadline of one pipeline, its write and all its replies (the URL's socket_timeout).
        self._timeout: float | None = pool.connection_kwargs.get("socket_timeout")
        self._wait_timeout: float = pool.timeout or 2.0
        self._scripts: dict[bytes, str] = {}
        self._put_code = self._script(_PUT_CODE)
        self._take_code = self._script(_TAKE_CODE)
        self._revoke_until = self._script(_REVOKE_UNTIL)
        self._put_refresh = self._script(_PUT_REFRESH)
        self._get_refresh = self._script(_GET_REFRESH)
        self._rotate = self._script(_ROTATE)
        # The auto-pipeline: a bounded queue, and the sender tasks draining it.
        self._pipelines = max(1, pipelines)
        self._batch = max(1, batch)
        self._queue: deque[_Op] = deque()
        self._room = asyncio.Semaphore(_MAX_PENDING)
        self._senders: set[asyncio.Task[None]] = set()
        self._starting = 0  # sender tasks created that have not taken their batch yet
        # A lone operation's caller sends it itself (``_send_alone``): set while none is in
        # flight, and the size of the last pipeline taken off the queue (more than one: the
        # store is under load, so operations go to the queue and share).
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._last_batch = 1
        # Operations taken off the queue and not yet answered (in pipelines in flight), and
        # whether a ``_flush`` is due.
        self._out = 0
        self._flushing = False
        # Connections kept between pipelines (at most one per sender): taking one from the
        # pool and giving it back costs more than the round trip's own work (a lock and the
        # pool's bookkeeping), about 45 µs a pipeline when requests come one at a time.
        self._idle: list[Any] = []
        # Observability and tests: pipelines sent, and a hook called with each pipeline's
        # size once its operations have left the queue (from then on they run as a unit).
        self.pipelines_sent = 0
        self.on_pipeline: Callable[[int], None] | None = None

    def _script(self, source: str) -> bytes:
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest().encode()
        self._scripts[sha] = source
        return sha

    # ------------------------------------------------------------- the auto-pipeline
    async def _acquire_room(self, n: int = 1) -> None:
        """Back-pressure: wait (at most the pool timeout) until ``n`` more operations fit."""
        held = 0
        try:
            for _ in range(n):
                if self._room.locked():
                    async with asyncio.timeout(self._wait_timeout):
                        await self._room.acquire()
                else:
                    await self._room.acquire()  # free room: returns at once
                held += 1
        except BaseException as exc:
            for _ in range(held):
                self._room.release()
            if isinstance(exc, TimeoutError):
                log.warning("redis store unavailable: queue full")
                raise StoreUnavailable("redis store unavailable: too many operations queued") from exc
            raise

    def _enqueue(self, command: tuple[EncodableT, ...], idempotent: bool) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Op(command, future, idempotent))
        self._kick()
        return future

    def _take(self, most: int) -> list[_Op]:
        """Up to ``most`` queued operations, oldest first, now out; a cancelled one is dropped."""
        batch: list[_Op] = []
        while self._queue and len(batch) < most:
            op = self._queue.popleft()
            if op.future.done():  # cancelled before it was sent: dropped
                self._room.release()
                continue
            batch.append(op)
        if batch:
            self._out += len(batch)
            self._last_batch = len(batch)
        return batch

    def _share(self, in_flight: int) -> int:
        return _pipeline_size(len(self._queue), self._out, in_flight, self._pipelines, self._batch)

    @property
    def _alone(self) -> bool:
        """Whether a lone operation is in flight."""
        return not self._quiet.is_set()

    @property
    def _in_flight(self) -> int:
        """Pipelines in flight: the sender tasks' and a lone operation's."""
        return len(self._senders) + (1 if self._alone else 0)

    def _flush(self) -> None:
        """What queued in the turn of the event loop that just ended goes out."""
        self._flushing = False
        self._kick(force=True)

    def _kick(self, force: bool = False) -> None:
        """Send what is queued while a pipeline is free, written now on a kept connection.

        Under load, a pipeline goes out in the turn of the caller that fills it: once the
        queue holds ``_EARLY`` operations and as many as each pipeline in flight. A sender
        task runs only after every caller already woken, so all of them queued first and
        went out as one pipeline, and the event loop sat idle while Redis ran it (a fifth of
        the time with 64 rotations in flight); now the load splits into even shares, and
        Redis runs one while the loop runs the callers of another. Less than that goes out
        when the turn ends (``_flush``, forced). Without a kept connection, a sender task
        checks one out of the pool.
        """
        in_flight = self._in_flight
        while self._queue and in_flight < self._pipelines:
            if not force and not _write_early(len(self._queue), self._out, in_flight):
                if not self._flushing:
                    self._flushing = True
                    asyncio.get_running_loop().call_soon(self._flush)
                return  # not yet: the end of the turn sends it
            writer = _open_writer(self._idle[-1]) if self._idle else None
            if writer is None:
                if self._starting == 0:  # a sender task checks a connection out (or fails it)
                    self._starting += 1
                    self._senders.add(asyncio.get_running_loop().create_task(self._sender()))
                return
            batch = self._take(self._share(in_flight))
            if not batch:
                return
            # The task reads the replies, or finds the connection closed if the write failed.
            self._senders.add(asyncio.get_running_loop().create_task(self._sender(batch, self._idle.pop())))
            try:
                writer.write(b"".join([_pack_command(op.command) for op in batch]))
            except Exception:  # asyncio reports a socket's errors to the reader, not here
                log.exception("redis store: a pipeline's write failed")
                writer.transport.abort()
            self._count(len(batch))
            in_flight += 1

    def _count(self, size: int) -> None:
        self.pipelines_sent += 1
        if self.on_pipeline is not None:
            self.on_pipeline(size)

    async def _send_alone(self, command: tuple[EncodableT, ...], idempotent: bool) -> Any:
        """Send a lone operation from its caller's task, as a pipeline of one: no sender task
        to create and wake, and its reply needs no future to come back through (~12 µs of
        ~85 µs of client CPU an operation, docs/store.md). Operations arriving meanwhile
        queue, as they would behind any pipeline."""
        op = _Op(command, asyncio.get_running_loop().create_future(), idempotent)
        self._quiet.clear()
        self._out += 1
        try:
            await self._send([op], alone=True)
        except BaseException:
            # The caller is cancelled: an answer its operation got goes nowhere.
            if not op.future.cancel() and not op.future.cancelled():
                op.future.exception()  # retrieved: asyncio would report it lost
            raise
        finally:
            self._quiet.set()
            self._kick()  # what queued meanwhile, and a retry ``_lost`` queued
        return await op.future  # answered, or queued again by ``_lost`` for one retry

    async def _run(self, *command: EncodableT, idempotent: bool = False) -> Any:
        """Send one command through the auto-pipeline and return its reply.

        Unreachable Redis becomes ``StoreUnavailable``. Cancelled before it is sent, the
        command is dropped; once sent, it completes or not as a unit in Redis.
        """
        await self._acquire_room()
        if self._senders or self._alone or self._queue or self._last_batch > 1:
            return await self._enqueue(command, idempotent)
        return await self._send_alone(command, idempotent)

    async def _script_run(
        self, sha: bytes, keys: list[str], args: list[EncodableT], *, idempotent: bool = False
    ) -> Any:
        """Run one of our Lua scripts (by its SHA) through the auto-pipeline."""
        return await self._run("EVALSHA", sha, len(keys), *keys, *args, idempotent=idempotent)

    def _settle(self, op: _Op, reply: Any) -> None:
        self._room.release()
        if op.future.done():  # the caller was cancelled: the reply is dropped
            return
        if isinstance(reply, _UNREACHABLE):
            op.future.set_exception(_unavailable(reply))
        elif isinstance(reply, BaseException):
            op.future.set_exception(reply)
        else:
            op.future.set_result(reply)

    def _answer(self, ops: list[_Op], replies: list[Any]) -> list[_Op]:
        """Answer each operation from its reply, but those whose script was not loaded:
        returned, to be sent again (NOSCRIPT: the script cache was flushed, a Redis restart;
        the script did not run, so it is safe to load it and send it again)."""
        missing: list[_Op] = []
        for op, reply in zip(ops, replies, strict=True):
            # Not for a caller already cancelled: nobody would hear what it did.
            if isinstance(reply, NoScriptError) and op.command[0] == "EVALSHA" and not op.future.done():
                missing.append(op)
            else:
                self._settle(op, reply)
        return missing

    async def _sender(self, batch: list[_Op] | None = None, written: Any = None) -> None:
        """One pipeline in flight: ``batch``, written on the connection ``written`` by
        ``_kick``, or (``None``) a share of the queue taken now and sent on a connection
        from the pool. Then what queued meanwhile goes out."""
        try:
            if batch is None:
                self._starting -= 1
                batch = self._take(self._share(self._in_flight - 1))  # not counting this one
                self._kick()
            if batch:
                await self._send(batch, written=written)
        finally:
            # Leave the set now, not in a done callback: between this sender's last look at
            # the queue and a callback, a new operation would find no pipeline free.
            task = asyncio.current_task()
            if task is not None:
                self._senders.discard(task)
            self._kick()

    async def _send(self, batch: list[_Op], *, alone: bool = False, written: Any = None) -> None:
        """Send ``batch`` (already written on the connection ``written``, when given) as one
        pipeline and answer each operation from its reply; the operations are no longer out
        once answered, failed or queued again."""
        try:
            pending = batch
            loads: list[str] = []
            for _ in range(_NOSCRIPT_ROUNDS + 1):
                commands: list[tuple[EncodableT, ...]] = [("SCRIPT", "LOAD", source) for source in loads]
                commands += [op.command for op in pending]
                if written is None:
                    self._count(len(commands))
                replies: list[Any] = []
                try:
                    await self._pipeline(commands, replies, written)
                except BaseException as exc:
                    # An operation whose reply was read before the failure has its outcome:
                    # it gets that reply (a redeemed code told "unavailable" would be retried
                    # and seen as reused). The outcome of the rest is unknown.
                    answered = replies[len(loads) :]
                    rest = self._answer(pending[: len(answered)], answered) + pending[len(answered) :]
                    if isinstance(exc, _UNREACHABLE):
                        await self._lost(rest, exc)
                        return
                    if isinstance(exc, Exception):  # any other failure of the pipeline
                        for op in rest:
                            self._settle(op, exc)
                        return
                    for op in rest:  # the sending task cancelled: outcome unknown
                        if alone:  # the task cancelled is the operation's caller
                            op.future.cancel()
                        self._settle(op, RedisConnectionError(f"pipeline abandoned: {type(exc).__name__}"))
                    raise
                written = None
                missing = self._answer(pending, replies[len(loads) :])
                if not missing:
                    return
                pending = missing
                shas = dict.fromkeys(op.command[1] for op in missing)
                loads = [self._scripts[sha] for sha in shas if isinstance(sha, bytes) and sha in self._scripts]
            for op in pending:
                self._settle(op, NoScriptError("NOSCRIPT persisted after SCRIPT LOAD"))
        finally:
            self._out -= len(batch)

    async def _pipeline(self, commands: list[tuple[EncodableT, ...]], replies: list[Any], written: Any = None) -> None:
        """Write ``commands`` at once on one connection (unless ``_kick`` has written them on
        the connection ``written``), then read one reply each into ``replies``: when the
        connection fails part way, the replies read before stay there for their operations.

        What ``pipeline(transaction=False).execute(raise_on_error=False)`` does, without its
        per-call bookkeeping: an error reply takes its place, a connection error or
        timeout raises, and a connection left with unread replies is closed and returned to
        the pool, never reused. A connection that answered every reply is kept for the next
        pipeline.
        """
        conn = written if written is not None else await self._connection()
        readonly = False
        try:
            # One deadline for the whole pipeline, its write and every reply, instead of a
            # timer each: the connection's own timeout is off while we hold it (``_checkout``),
            # so redis-py's write starts no ``wait_for`` (on Python 3.11 a task and a timer: a
            # lone operation took 210 µs with it, 142-170 without, 2026-11-29), and
            # timeout=math.inf asks for no timer per reply.
            try:
                async with asyncio.timeout(self._timeout):
                    if written is None:  # hiredis packs each command in one C call
                        await conn.send_packed_command(b"".join([_pack_command(c) for c in commands]))
                    for _ in commands:
                        try:
                            replies.append(await conn.read_response(timeout=math.inf))
                        except ResponseError as exc:
                            replies.append(exc)
                            readonly = readonly or isinstance(exc, ReadOnlyError)
            except TimeoutError:
                raise RedisTimeoutError(f"pipeline not answered within {self._timeout} s") from None
        except BaseException:
            await self._discard(conn)
            raise
        if readonly:
            # READONLY: the node is a replica now (a failover). Its connections are no use for
            # writes; dropped, the next pipeline connects again (to the new primary, where a
            # failover moves the address).
            await self._discard(conn)
            await self._drop_connections()
            return
        self._idle.append(conn)

    async def _connection(self) -> Any:
        """A kept connection (it answered every reply of its last pipeline), else one from
        the pool. A kept one the event loop has seen the server close since (an idle
        ``timeout``, a restart) goes back to the pool closed, to be connected again, as
        redis-py's pool does with its own; a close not yet read fails the pipeline as it
        would fail a pooled connection."""
        while self._idle:
            conn = self._idle.pop()
            if _open_writer(conn) is not None:
                return conn
            await self._discard(conn)
        return await self._checkout()

    async def _discard(self, conn: Any) -> None:
        """Close a connection that must not be used again and give it back to the pool, which
        connects it afresh when it hands it out."""
        try:
            await conn.disconnect()
        finally:  # back to the pool even if closing failed: the pool never shrinks
            await self._checkin(conn)

    async def _drop_connections(self) -> None:
        """Close the kept connections and those idle in the pool: the next pipelines connect
        again (after a lost connection, a restart, a failover)."""
        with contextlib.suppress(Exception):
            await self._release_idle()
        with contextlib.suppress(Exception):
            await self.client.connection_pool.disconnect(inuse_connections=False)

    async def _checkout(self) -> Any:
        """A connection from the pool (connected, its handshake under its own timeout), its
        timeout then left to ``_pipeline``'s deadline until ``_checkin``."""
        conn = await self.client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        conn.socket_timeout = None
        return conn

    async def _checkin(self, conn: Any) -> None:
        """Back to the pool with its timeout: the next connect's handshake reads under it."""
        conn.socket_timeout = self._timeout
        await self.client.connection_pool.release(conn)

    async def _lost(self, pending: list[_Op], exc: BaseException) -> None:
        """The pipeline's connection failed: every operation's outcome is unknown.

        Stale pooled connections (after a Redis restart) are dropped; idempotent operations
        are sent once more (on a fresh connection, in the next pipeline), the others fail.
        """
        try:
            await self._drop_connections()
        finally:  # also when the sending task is cancelled here: no operation is left hanging
            again: list[_Op] = []
            for op in pending:
                if op.retry and isinstance(exc, RedisConnectionError) and not op.future.done():
                    op.retry = False
                    again.append(op)
                else:
                    self._settle(op, exc)
            self._queue.extendleft(reversed(again))

    # ------------------------------------------------------------- replay cache
    async def claim_once(self, key: str, ttl: float) -> bool:
        name = f"{self.prefix}:claim:{key}"
        ms = max(1, round(ttl * 1000))
        return bool(await self._run("SET", name, b"1", "NX", "PX", ms))

    # ------------------------------------------------------------- families
    async def revoke_family(self, family_id: str, until: float) -> bool:
        keys = [_revoked_key(self.prefix, family_id)]
        return bool(await self._script_run(self._revoke_until, keys, [_ms(until)]))

    async def family_revoked(self, family_id: str) -> bool:
        key = _revoked_key(self.prefix, family_id)
        return bool(await self._run("EXISTS", key, idempotent=True))

    # ------------------------------------------------------------- access tokens
    async def revoke_access_token(self, jti: str, expires_at: float) -> None:
        keys = [_jti_tag(self.prefix, jti) + ":revoked"]
        await self._script_run(self._revoke_until, keys, [_ms(expires_at)], idempotent=True)

    async def access_token_revoked(self, jti: str, family_id: str | None) -> bool:
        jti_key = _jti_tag(self.prefix, jti) + ":revoked"
        if family_id is None:
            return bool(await self._run("EXISTS", jti_key, idempotent=True))
        family_key = _revoked_key(self.prefix, family_id)

        # Two slots: not one multi-key command (CROSSSLOT under Cluster), but two single-key
        # reads queued together, so they share one pipeline's round trip.
        await self._acquire_room(2)
        jti_reply = self._enqueue(("EXISTS", jti_key), True)
        family_reply = self._enqueue(("EXISTS", family_key), True)
        try:
            jti_revoked = await jti_reply
        finally:
            if not jti_reply.done() or jti_reply.cancelled() or jti_reply.exception() is not None:
                family_reply.cancel()  # not sent yet: dropped; sent: its reply is dropped
        family_revoked = await family_reply
        return bool(jti_revoked or family_revoked)

    # ------------------------------------------------------------- codes
    async def put_code(self, record: CodeRecord) -> None:
        keys = [f"{self.prefix}:code:{record.code_hash}"]
        args: list[EncodableT] = [
            _encode(record),
            _ms(record.expires_at),
            _ms(max(record.expires_at, record.reuse_detect_until)),
            record.family_id,
            record.client_id,
        ]
        await self._script_run(self._put_code, keys, args, idempotent=True)

    async def take_code(self, code_hash: str) -> CodeRecord | CodeReused | None:
        keys = [f"{self.prefix}:code:{code_hash}"]
        reply = await self._script_run(self._take_code, keys, [])
        if not reply:
            return None
        if reply[0] == b"taken":
            return _code_decoder.decode(reply[1])
        return CodeReused(family_id=reply[1].decode(), client_id=reply[2].decode())

    # ------------------------------------------------------------- refresh tokens
    async def put_refresh(self, record: RefreshRecord) -> bool:
        fam = record.family_id
        keys = [_revoked_key(self.prefix, fam), _refresh_prefix(self.prefix, fam) + record.token_hash]
        args: list[EncodableT] = [_encode(record), _ms(record.expires_at)]
        return bool(await self._script_run(self._put_refresh, keys, args, idempotent=True))

    async def get_refresh(self, family_id: str, token_hash: str) -> RefreshRecord | None:
        keys = [_revoked_key(self.prefix, family_id), _refresh_prefix(self.prefix, family_id) + token_hash]
        reply = await self._script_run(self._get_refresh, keys, [], idempotent=True)
        return _refresh_record(reply) if reply else None

    async def rotate_refresh(
        self, family_id: str, old_hash: str, successor: RefreshRecord, sealed: bytes | None
    ) -> RotateResult:
        if successor.family_id != family_id:
            raise ValueError("a successor stays in its predecessor's family")
        rt = _refresh_prefix(self.prefix, family_id)
        keys = [_revoked_key(self.prefix, family_id), rt + old_hash, rt + successor.token_hash]
        args: list[EncodableT] = [
            repr(self._clock()),
            successor.token_hash,
            b"1" if sealed is not None else b"0",
            sealed if sealed is not None else b"",
            _encode(successor),
            _ms(successor.expires_at),
            rt,
        ]
        reply = await self._script_run(self._rotate, keys, args)
        return _rotate_result(family_id, reply)

    async def aclose(self) -> None:
        """Answer (or fail) every queued operation, then close the connection pool."""
        while self._senders or self._alone:
            await asyncio.gather(*self._senders, self._quiet.wait(), return_exceptions=True)
        while self._queue:  # only if no sender could run (its event loop is gone)
            self._settle(self._queue.popleft(), RedisConnectionError("store closed"))
        await self._release_idle()
        await self.client.aclose()

    async def _release_idle(self) -> None:
        """Give the connections kept between pipelines back to the pool."""
        while self._idle:
            await self._checkin(self._idle.pop())


def _open_writer(conn: Any) -> Any:
    """The stream writer of a connection the event loop has not seen closed, else None:
    closing on our side, or the server's close read (its reader at EOF)."""
    writer = getattr(conn, "_writer", None)
    reader = getattr(conn, "_reader", None)
    if writer is None or reader is None or writer.is_closing() or reader.at_eof():
        return None
    return writer


def open_redis_store(url: str) -> RedisStore:
    """Entry points ``redis`` and ``rediss``: ``open_store("redis://127.0.0.1:6379/0?prefix=a")``."""
    return RedisStore(url)

"""The Redis store's auto-pipelining, against a real redis-server: concurrent operations
share pipelines (counted by the store's ``pipelines_sent`` and by Redis itself), yet each
keeps its own reply, its own error, its NOSCRIPT recovery and its cancellation."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from attesto_asgi_redis import RedisStore
from attesto_asgi_redis._store import _EARLY, _MAX_PENDING, _pipeline_size, _write_early

from attesto_asgi import StoreUnavailable
from attesto_asgi._secrets import new_id
from attesto_asgi.model import AlreadyRotated, CodeReused, RefreshRecord, Rotated
from attesto_asgi.testing.store_contract import LONG, make_code, make_refresh, successor_of
from tests.stores.redis_server import RedisServer


async def _evalsha_calls(store: RedisStore) -> int:
    """EVALSHA calls that ran a script (a NOSCRIPT reply counts as a failed call)."""
    stats = await store.client.info("commandstats")
    entry = stats.get("cmdstat_evalsha", {})
    if not isinstance(entry, dict):
        return 0
    return int(entry.get("calls", 0)) - int(entry.get("failed_calls", 0)) - int(entry.get("rejected_calls", 0))


def _pid(server: RedisServer) -> int:
    """The running redis-server's pid, to stop (SIGSTOP) or kill it."""
    assert server.proc is not None
    return server.proc.pid


def _sent(store: RedisStore) -> asyncio.Event:
    """Set once the store has taken a pipeline's operations off its queue."""
    event = asyncio.Event()
    store.on_pipeline = lambda _size: event.set()
    return event


async def test_concurrent_operations_share_pipelines_and_keep_their_own_replies(redis_store: RedisStore) -> None:
    now = time.time()
    records = [make_refresh(now, ttl=LONG) for _ in range(2500)]  # more than the queue bound
    before, calls_before = redis_store.pipelines_sent, await _evalsha_calls(redis_store)
    assert all(await asyncio.gather(*(redis_store.put_refresh(r) for r in records)))
    found = await asyncio.gather(*(redis_store.get_refresh(r.family_id, r.token_hash) for r in records))
    assert [f.token_hash if f else None for f in found] == [r.token_hash for r in records]
    sent = redis_store.pipelines_sent - before
    assert 0 < sent < len(records)  # 5000 operations, far fewer round trips
    # Redis ran every script once: batching shares round trips, it neither drops nor repeats.
    assert await _evalsha_calls(redis_store) - calls_before == 2 * len(records)


async def test_a_lone_operation_is_one_pipeline(redis_store: RedisStore) -> None:
    before = redis_store.pipelines_sent
    assert await redis_store.family_revoked(new_id()) is False
    assert redis_store.pipelines_sent - before == 1


def _paths_seen(store: RedisStore) -> list[tuple[asyncio.Task[object] | None, str]]:
    """The task that wrote each pipeline from now on, and whether it went "alone" (its
    caller sends it and reads its reply) or "queued" (a task reads the replies)."""
    seen: list[tuple[asyncio.Task[object] | None, str]] = []
    store.on_pipeline = lambda _size: seen.append((asyncio.current_task(), "alone" if store._alone else "queued"))
    return seen


async def test_a_lone_operation_is_sent_by_its_caller_until_operations_share_pipelines(
    redis_store: RedisStore,
) -> None:
    seen = _paths_seen(redis_store)
    me = asyncio.current_task()
    assert await redis_store.family_revoked(new_id()) is False
    assert await redis_store.claim_once(new_id(), 60) is True
    assert seen == [(me, "alone"), (me, "alone")]  # no task: the caller sends its own operation
    # Under load (a pipeline of more than one), operations queue even one at a time, until a
    # pipeline holds one again.
    sizes: list[tuple[int, int]] = []
    redis_store.on_pipeline = lambda size: sizes.append((size, redis_store._out))
    assert not any(await asyncio.gather(*(redis_store.family_revoked(new_id()) for _ in range(40))))
    # Each pipeline's size and the operations out once it is: the first went alone; a
    # sender task took half of the load (40 / 2); the other 19, fewer than the 20 in
    # flight, went out once the callers woken with them had run and the lone operation's
    # pipeline was free, while the 20 were still out.
    assert sizes == [(1, 1), (20, 21), (19, 39)]
    seen = _paths_seen(redis_store)
    for _ in range(3):
        assert await redis_store.family_revoked(new_id()) is False
    # Queued, then written once the caller's turn of the event loop ended (by a callback,
    # no task) and read by a task; then alone again.
    assert seen == [(None, "queued"), (me, "alone"), (me, "alone")]
    assert not redis_store._senders
    assert not redis_store._alone


@pytest.mark.parametrize(
    ("queued", "out", "in_flight", "early"),
    [
        (15, 0, 0, False),  # fewer than _EARLY: the end of the turn sends them
        (16, 0, 0, True),
        (16, 32, 1, False),  # less than the pipeline in flight holds
        (31, 32, 1, False),
        (32, 32, 1, True),  # as much: the load splits in two even shares
        (40, 32, 1, True),
        (16, 30, 2, True),  # with two in flight, as much as each holds on average
        (14, 28, 2, False),  # under _EARLY
    ],
)
def test_a_pipeline_goes_out_early_once_it_holds_16_and_a_share(
    queued: int, out: int, in_flight: int, early: bool
) -> None:
    assert _EARLY == 16
    assert _write_early(queued, out, in_flight) is early


@pytest.mark.parametrize(
    ("queued", "out", "in_flight", "size"),
    [
        (40, 0, 0, 128),  # none in flight: everything queued (up to the bound)
        (1, 0, 0, 128),
        (32, 32, 1, 32),  # one in flight: an even share of the 64
        (19, 20, 1, 20),  # rounded up: all 19 go
        (62, 1, 1, 32),  # a small pipeline in flight: half of the load, not all 62
        (300, 100, 1, 128),  # the bound
    ],
)
def test_a_pipeline_takes_everything_queued_or_an_even_share(queued: int, out: int, in_flight: int, size: int) -> None:
    assert _pipeline_size(queued, out, in_flight, 2, 128) == size


async def test_under_load_the_callers_split_into_two_pipelines_that_take_turns(redis_store: RedisStore) -> None:
    # 64 callers, each one operation at a time. Were every pipeline written by a task, it
    # would run after all the callers woken with it and take them all: one pipeline of 64,
    # the event loop idle while Redis runs it. Written in a caller's turn once the queue
    # holds 16 operations and as many as the pipeline in flight, they take turns: on an
    # idle machine two pipelines of 32, each sent while the other is out (a busy one reads
    # Redis's replies in pieces, and the shares vary).
    callers: set[asyncio.Future[None]] = set()
    seen: list[tuple[int, int, bool]] = []
    redis_store.on_pipeline = lambda size: seen.append((size, redis_store._out, asyncio.current_task() in callers))

    async def caller() -> None:
        for _ in range(15):
            assert await redis_store.family_revoked(new_id()) is False

    callers.update(asyncio.ensure_future(caller()) for _ in range(64))
    await asyncio.gather(*callers)
    assert sum(size for size, _, _ in seen) == 64 * 15
    assert seen[0] == (1, 1, True)  # the first went alone
    steady = seen[2:-1]  # after the first pipeline of the sender task, before the last
    # A convoy would make every one of them all 64 callers, none sent while another is out.
    assert sum(size > 48 for size, _, _ in steady) <= len(steady) / 4, seen
    overlapping = [s for s in steady if s[2] and s[1] > s[0]]  # in a caller's turn, another out
    assert len(overlapping) >= len(steady) / 3, seen


async def test_pipelines_written_in_the_callers_turn_work_over_tls(redis_tls: tuple[str, Path]) -> None:
    url, ca = redis_tls
    store = RedisStore(f"{url}/0?prefix=t{new_id()}&ssl_ca_certs={ca}")
    callers: set[asyncio.Future[None]] = set()
    in_callers_turn: list[bool] = []
    store.on_pipeline = lambda _size: in_callers_turn.append(asyncio.current_task() in callers)
    now = time.time()
    records = [make_refresh(now, ttl=LONG) for _ in range(64 * 5)]

    async def caller(mine: list[RefreshRecord]) -> None:
        for record in mine:
            assert await store.put_refresh(record)
            found = await store.get_refresh(record.family_id, record.token_hash)
            assert found is not None
            assert found.token_hash == record.token_hash

    try:
        assert store.client.connection_pool.connection_class.__name__ == "SSLConnection"
        callers.update(asyncio.ensure_future(caller(records[i::64])) for i in range(64))
        async with asyncio.timeout(30):  # a guard against a hang, not a speed check
            await asyncio.gather(*callers)
        # Pipelines went out on the TLS stream from the callers' turn, written at once.
        assert sum(in_callers_turn) >= 10, in_callers_turn
    finally:
        await store.aclose()


async def test_errors_stay_per_operation(redis_store: RedisStore) -> None:
    now = time.time()
    good = [make_refresh(now, ttl=LONG) for _ in range(5)]
    for r in good:
        await redis_store.put_refresh(r)
    bad = make_refresh(now, ttl=LONG)
    # A string where the script expects a hash: that script alone fails (WRONGTYPE).
    await redis_store.client.set("{" + redis_store.prefix + ":" + bad.family_id + "}:rt:" + bad.token_hash, b"x")
    before = redis_store.pipelines_sent
    results = await asyncio.gather(
        *(redis_store.get_refresh(r.family_id, r.token_hash) for r in good[:3]),
        redis_store.get_refresh(bad.family_id, bad.token_hash),
        *(redis_store.get_refresh(r.family_id, r.token_hash) for r in good[3:]),
        return_exceptions=True,
    )
    # The first went alone (its caller sent it at once); the other five, the failing one
    # among them, queued behind it and shared two pipelines (half of the six each).
    assert redis_store.pipelines_sent - before == 3
    assert isinstance(results[3], Exception)
    assert "WRONGTYPE" in str(results[3])
    others = results[:3] + results[4:]
    assert [getattr(r, "token_hash", None) for r in others] == [r.token_hash for r in good]


async def test_noscript_after_script_flush_is_recovered_for_every_operation(redis_store: RedisStore) -> None:
    now = time.time()
    records = [make_refresh(now, ttl=LONG) for _ in range(20)]
    for r in records:
        await redis_store.put_refresh(r)
    code = make_code(now)
    await redis_store.put_code(code)
    await redis_store.client.script_flush()  # what a Redis restart does to the script cache
    before, calls_before = redis_store.pipelines_sent, await _evalsha_calls(redis_store)
    results = await asyncio.gather(
        *(redis_store.rotate_refresh(r.family_id, r.token_hash, successor_of(r, now), None) for r in records),
        redis_store.take_code(code.code_hash),
        redis_store.family_revoked(new_id()),  # a native command: no script, answered in round one
    )
    # Each non-idempotent script ran exactly once: a second run would be AlreadyRotated or a reuse.
    assert results[: len(records)] == [Rotated(record=r) for r in records]
    assert results[len(records)] == code
    assert results[-1] is False
    # Redis ran each of the 21 scripts once (a NOSCRIPT reply counts as a failed call).
    assert await _evalsha_calls(redis_store) - calls_before == len(records) + 1
    # The first operation went alone, the other 21 queued behind it and shared pipelines
    # (two on an idle machine; how the shares fall depends on when replies come back):
    # each had a NOSCRIPT round, then its load-and-resend.
    assert redis_store.pipelines_sent - before >= 4
    assert await redis_store.take_code(code.code_hash) == CodeReused(family_id=code.family_id, client_id=code.client_id)
    again = await redis_store.rotate_refresh(
        records[0].family_id, records[0].token_hash, successor_of(records[0], now), None
    )
    assert isinstance(again, AlreadyRotated)


async def test_after_noscript_an_operation_whose_caller_was_cancelled_is_not_sent_again(
    private_redis: RedisServer,
) -> None:
    # Its first send ran nothing (NOSCRIPT); sent again it would redeem a code for a caller
    # that is gone (a client that disconnected): it is dropped instead.
    code = make_code(time.time())
    store = RedisStore(f"{private_redis.url}/0?prefix=t{new_id()}&socket_timeout=5")
    pid = _pid(private_redis)
    try:
        await store.put_code(code)
        await asyncio.gather(*(store.family_revoked(new_id()) for _ in range(20)))  # under load
        await store.client.script_flush()
        os.kill(pid, signal.SIGSTOP)  # what is sent is answered only once the caller is gone
        try:
            sent = _sent(store)
            taking = asyncio.ensure_future(store.take_code(code.code_hash))
            other = asyncio.ensure_future(store.family_revoked(new_id()))
            await sent.wait()
            taking.cancel()
        finally:
            os.kill(pid, signal.SIGCONT)
        async with asyncio.timeout(10):
            assert await other is False
        with pytest.raises(asyncio.CancelledError):
            await taking
        assert await store.take_code(code.code_hash) == code  # never redeemed
    finally:
        await store.aclose()


async def test_cancelled_before_send_is_dropped(redis_store: RedisStore) -> None:
    record = make_refresh(time.time(), ttl=LONG)
    before = redis_store.pipelines_sent
    lone = asyncio.ensure_future(redis_store.family_revoked(new_id()))
    task = asyncio.ensure_future(redis_store.put_refresh(record))
    await asyncio.sleep(0)  # the lone one is sent; the put queues, and its sender has not run
    assert redis_store.pipelines_sent == before + 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)  # the sender runs: it finds only a cancelled operation
    assert await lone is False
    assert redis_store.pipelines_sent == before + 1  # the put was never sent
    assert not redis_store._senders
    assert await redis_store.get_refresh(record.family_id, record.token_hash) is None


async def test_cancelled_after_send_completes_as_a_unit(redis_server: RedisServer) -> None:
    store = RedisStore(f"{redis_server.url}/0?prefix=t{new_id()}")
    # put_refresh's script loaded first: a NOSCRIPT reply would mean it never ran, and an
    # operation whose caller is gone is not sent again.
    assert await store.put_refresh(make_refresh(time.time(), ttl=LONG)) is True
    record = make_refresh(time.time(), ttl=LONG)
    lone = asyncio.ensure_future(store.family_revoked(new_id()))
    await asyncio.sleep(0)  # sent alone: the put queues for a sender task
    sent = _sent(store)
    task = asyncio.ensure_future(store.put_refresh(record))
    await sent.wait()  # the put has left the queue: it is sent
    assert await lone is False
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.aclose()  # waits for the in-flight pipeline
    check = RedisStore(f"{redis_server.url}/0?prefix={store.prefix}")
    try:
        found = await check.get_refresh(record.family_id, record.token_hash)
        assert found is not None
        assert found.token_hash == record.token_hash
    finally:
        await check.aclose()


async def test_a_lone_operation_cancelled_after_its_write_runs_and_the_store_goes_on(
    redis_store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    # A connection kept, and put_refresh's script loaded (after a NOSCRIPT reply it would
    # not have run, and nobody is left to send it again).
    assert await redis_store.put_refresh(make_refresh(time.time(), ttl=LONG)) is True
    record = make_refresh(time.time(), ttl=LONG)
    sent = _sent(redis_store)
    task = asyncio.ensure_future(redis_store.put_refresh(record))
    await sent.wait()  # its caller sends it alone, on the kept connection: written, unanswered
    assert redis_store._alone
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Written before the cancel, so it ran in Redis; its reply went unread, so that
    # connection was closed, not kept. Nothing is left in flight or holding room.
    assert not redis_store._alone
    assert not redis_store._idle
    assert redis_store._room._value == _MAX_PENDING
    assert "unavailable" not in caplog.text  # a cancellation is not an outage
    found = await redis_store.get_refresh(record.family_id, record.token_hash)
    assert found is not None
    assert found.token_hash == record.token_hash


async def test_aclose_waits_for_a_lone_operation_in_flight(redis_server: RedisServer) -> None:
    store = RedisStore(f"{redis_server.url}/0?prefix=t{new_id()}")
    record = make_refresh(time.time(), ttl=LONG)
    sent = _sent(store)
    task = asyncio.ensure_future(store.put_refresh(record))
    await sent.wait()
    assert store._alone
    await store.aclose()
    assert task.done()
    assert task.result() is True


async def test_with_one_pipeline_what_queued_behind_a_lone_operation_is_sent(redis_server: RedisServer) -> None:
    store = RedisStore(f"{redis_server.url}/0?prefix=t{new_id()}", pipelines=1)
    sizes: list[int] = []
    store.on_pipeline = sizes.append
    try:
        async with asyncio.timeout(10):  # no sender may start while the lone one is in flight
            assert not any(await asyncio.gather(*(store.family_revoked(new_id()) for _ in range(3))))
        assert sizes == [1, 2]
    finally:
        await store.aclose()


async def test_a_lone_idempotent_operation_is_sent_again_after_a_restart(private_redis: RedisServer) -> None:
    store = RedisStore(f"{private_redis.url}/0?prefix=t{new_id()}&socket_timeout=2")
    try:
        assert await store.family_revoked(new_id()) is False  # a connection kept
        private_redis.stop()
        private_redis.start()  # the kept connection is closed: its next pipeline fails
        seen = _paths_seen(store)
        async with asyncio.timeout(10):
            assert await store.family_revoked(new_id()) is False
        # Sent alone and lost; idempotent, so queued again once and sent by a sender task
        # (no connection kept: it checks one out of the pool).
        assert [path for _task, path in seen] == ["alone", "queued"]
        assert seen[0][0] is asyncio.current_task()
        assert seen[1][0] is not seen[0][0]
    finally:
        await store.aclose()


async def test_pipelines_written_on_connections_a_restart_closed_are_sent_again_if_idempotent(
    private_redis: RedisServer,
) -> None:
    store = RedisStore(f"{private_redis.url}/0?prefix=t{new_id()}&socket_timeout=2")
    try:
        now = time.time()
        records = [make_refresh(now, ttl=LONG) for _ in range(30)]
        assert all(await asyncio.gather(*(store.put_refresh(r) for r in records)))
        assert len(store._idle) == 2  # both connections kept, the next pipelines written on them
        private_redis.stop()
        private_redis.start()  # same port, empty: the kept connections are closed
        sizes: list[int] = []
        store.on_pipeline = sizes.append
        code = make_code(now)
        async with asyncio.timeout(10):
            results = await asyncio.gather(
                store.take_code(code.code_hash),  # not idempotent: its outcome is unknown
                *(store.put_refresh(r) for r in records),  # idempotent: sent again, once
                return_exceptions=True,
            )
        # The first two pipelines went out on the two closed connections and were lost: 16
        # operations once that many were queued (``_EARLY``), the other 15 when the turn
        # that queued them all ended.
        assert sizes[:2] == [_EARLY, len(records) + 1 - _EARLY]
        assert isinstance(results[0], StoreUnavailable)
        assert results[1:] == [True] * len(records)
        found = await asyncio.gather(*(store.get_refresh(r.family_id, r.token_hash) for r in records))
        assert [f.token_hash if f else None for f in found] == [r.token_hash for r in records]
    finally:
        await store.aclose()


class _RefusingWriter:
    """A connection's stream writer whose ``write`` raises (asyncio's never does for a
    socket's error: it reports those to the reader)."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def write(self, data: bytes) -> None:
        raise RuntimeError("refused")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


async def test_a_pipeline_whose_write_fails_fails_as_a_lost_connection(
    redis_store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    now = time.time()
    code = make_code(now)
    await redis_store.put_code(code)
    records = [make_refresh(now, ttl=LONG) for _ in range(10)]
    # A burst: the store is under load, so the next operation is queued and written by
    # ``_kick`` on the last connection kept.
    assert all(await asyncio.gather(*(redis_store.put_refresh(r) for r in records)))
    refusing = redis_store._idle[-1]
    refusing._writer = _RefusingWriter(refusing._writer)
    # The connection is aborted: a lost connection, so the idempotent operations are sent
    # again (left to the deadline, every operation would fail as timed out).
    async with asyncio.timeout(10):  # a guard against a hang, not a speed check
        results = await asyncio.gather(
            redis_store.take_code(code.code_hash),  # on the refusing connection: unknown outcome
            *(redis_store.put_refresh(r) for r in records),  # idempotent: sent again
            return_exceptions=True,
        )
    assert isinstance(results[0], StoreUnavailable)
    assert results[1:] == [True] * len(records)
    assert "a pipeline's write failed" in caplog.text
    # The write never left: the code is still there, once.
    assert await redis_store.take_code(code.code_hash) == code


async def test_lone_and_shared_operations_cancelled_at_random_keep_the_books(redis_store: RedisStore) -> None:
    # Bursts and lone operations, some cancelled before, during or after their send: each
    # answers or is cancelled, and afterwards nothing is in flight, queued or holding room.
    rng = random.Random(20261129)
    for _ in range(60):
        keys = [new_id() for _ in range(rng.choice([1, 1, 1, 2, 5, 40]))]
        tasks = [asyncio.ensure_future(redis_store.claim_once(k, 60)) for k in keys]
        if rng.random() < 0.5:
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
        else:
            await asyncio.sleep(rng.random() / 2000)  # up to 0.5 ms: some replies are awaited
        for task in tasks:
            if rng.random() < 0.3:
                task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(r is True or isinstance(r, asyncio.CancelledError) for r in results), results
    while redis_store._senders:  # a sender still reading the replies of cancelled callers
        await asyncio.gather(*redis_store._senders)
    assert redis_store._room._value == _MAX_PENDING
    assert not redis_store._queue
    assert not redis_store._alone
    assert redis_store._starting == 0
    key = new_id()
    assert await redis_store.claim_once(key, 60) is True
    assert await redis_store.claim_once(key, 60) is False


async def test_aclose_answers_everything_queued(redis_server: RedisServer) -> None:
    store = RedisStore(f"{redis_server.url}/0?prefix=t{new_id()}")
    records = [make_refresh(time.time(), ttl=LONG) for _ in range(300)]
    tasks = [asyncio.ensure_future(store.put_refresh(r)) for r in records]
    await asyncio.sleep(0)  # all queued
    await store.aclose()
    assert all(t.done() for t in tasks)
    assert all(t.result() for t in tasks)


async def test_a_dropped_connection_fails_its_pipeline_and_the_store_serves_again(
    private_redis: RedisServer,
) -> None:
    store = RedisStore(f"{private_redis.url}/0?prefix=t{new_id()}&socket_timeout=5")
    try:
        now = time.time()
        code = make_code(now)
        await store.put_code(code)
        records = [make_refresh(now, ttl=LONG) for _ in range(10)]
        pid = _pid(private_redis)
        os.kill(pid, signal.SIGSTOP)  # the pipeline is sent but never answered
        sent = _sent(store)
        calls = [
            asyncio.ensure_future(store.take_code(code.code_hash)),  # not idempotent
            *(asyncio.ensure_future(store.put_refresh(r)) for r in records),  # idempotent
        ]
        await sent.wait()
        os.kill(pid, signal.SIGKILL)  # the connection drops mid-pipeline
        private_redis.stop()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        private_redis.start()  # same port, empty
        # The same store serves again, without a restart of its own.
        assert all(await asyncio.gather(*(store.put_refresh(r) for r in records)))
        assert await store.take_code(code.code_hash) is None  # the restarted server is empty
    finally:
        await store.aclose()


async def test_a_frozen_server_fails_the_whole_pipeline_within_its_deadline(private_redis: RedisServer) -> None:
    # One deadline (socket_timeout) covers all of a pipeline's replies: a server that takes
    # the commands and never answers fails every operation of the pipeline with
    # StoreUnavailable, and the connection that still owes replies is never reused.
    store = RedisStore(f"{private_redis.url}/0?prefix=t{new_id()}&socket_timeout=0.5")
    pid = _pid(private_redis)
    try:
        now = time.time()
        code = make_code(now)
        await store.put_code(code)
        records = [make_refresh(now, ttl=LONG) for _ in range(10)]
        os.kill(pid, signal.SIGSTOP)
        try:
            async with asyncio.timeout(30):  # a guard against a hang, not a speed check
                results = await asyncio.gather(
                    store.take_code(code.code_hash),  # not idempotent: never resent
                    *(store.put_refresh(r) for r in records),
                    return_exceptions=True,
                )
        finally:
            os.kill(pid, signal.SIGCONT)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        # The frozen redemption's outcome is unknown (Redis may run or drop what a closed
        # connection sent): the code was redeemed at most once, by it or by this call.
        taken = await store.take_code(code.code_hash)
        assert taken == code or isinstance(taken, CodeReused), taken
        # A fresh connection answers each operation with its own reply, none from the old one.
        fresh = make_code(time.time())
        await store.put_code(fresh)
        assert all(await asyncio.gather(*(store.put_refresh(r) for r in records)))
        assert await store.take_code(fresh.code_hash) == fresh
        found = await asyncio.gather(*(store.get_refresh(r.family_id, r.token_hash) for r in records))
        assert [f.token_hash if f else None for f in found] == [r.token_hash for r in records]
    finally:
        await store.aclose()


async def test_a_frozen_server_never_hangs_a_reconnect(private_redis: RedisServer) -> None:
    # The store holds its connections with redis-py's own timeout off (its pipelines have
    # one deadline of their own) and gives it back with the connection: a connection that
    # reconnects reads its handshake under it, or a frozen server would hold it for ever.
    store = RedisStore(f"{private_redis.url}/0?prefix=t{new_id()}&socket_timeout=0.5")
    pid = _pid(private_redis)
    try:
        assert await store.family_revoked(new_id()) is False  # a connection is held
        os.kill(pid, signal.SIGSTOP)
        try:
            async with asyncio.timeout(30):  # a guard against a hang, not a speed check
                for _ in range(3):  # the held connection times out; then reconnects do
                    with pytest.raises(StoreUnavailable):
                        await store.family_revoked(new_id())
        finally:
            os.kill(pid, signal.SIGCONT)
        assert await store.family_revoked(new_id()) is False
    finally:
        await store.aclose()


async def test_a_kept_connection_the_server_closed_while_idle_is_replaced_not_failed(
    private_redis: RedisServer,
) -> None:
    # Redis's `timeout` (common on managed Redis) closes idle clients. A kept connection whose
    # close the event loop has read goes back to the pool to reconnect, as redis-py's pool
    # does: a non-idempotent operation after a quiet spell must not fail with a 503.
    admin = RedisStore(f"{private_redis.url}/0?prefix=admin{new_id()}")
    await admin.client.config_set("timeout", 1)  # this test's own server: not restored
    await admin.aclose()
    store = RedisStore(f"{private_redis.url}/0?prefix=t{new_id()}&socket_timeout=2")
    try:
        now = time.time()
        codes = [make_code(now) for _ in range(11)]
        for code in codes:
            await store.put_code(code)
        for burst in (False, True):  # a lone operation, then a burst written by ``_kick``
            assert store._idle
            async with asyncio.timeout(15):  # until the server has closed what we keep
                assert [await c._reader.read(1) for c in store._idle] == [b""] * len(store._idle)
            todo = codes[1:] if burst else codes[:1]
            taken = await asyncio.gather(*(store.take_code(c.code_hash) for c in todo), return_exceptions=True)
            assert taken == todo, taken
    finally:
        await store.aclose()


class _CutAfterOneReply:
    """A loopback proxy to Redis that, once ``armed`` is set, forwards exactly one complete
    reply more and then cuts both connections (a crash between two replies of a pipeline)."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.armed = False
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: set[asyncio.Task[Any]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        import hiredis

        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.redis_port)
        self.writers += [client_w, server_w]

        async def upstream() -> None:
            while data := await client_r.read(65536):
                server_w.write(data)

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if not self.armed:
                    client_w.write(data)
                    continue
                reader = hiredis.Reader()
                for i in range(len(data)):
                    reader.feed(data[i : i + 1])
                    if reader.gets() is not False:
                        self.armed = False
                        server_w.transport.abort()
                        client_w.write(data[: i + 1])
                        client_w.close()  # after what was written: that reply, then the close
                        return

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)
        client_w.transport.abort()
        server_w.transport.abort()


async def test_replies_read_before_a_connection_drops_answer_their_operations(redis_server: RedisServer) -> None:
    # Two redemptions share a pipeline and the connection drops after the first reply: the
    # first code was redeemed and its caller gets it (told "unavailable", a retry would find
    # the code reused and revoke the family); the second's outcome is unknown.
    proxy = _CutAfterOneReply(redis_server.port)
    store = RedisStore(f"redis://127.0.0.1:{await proxy.start()}/0?prefix=t{new_id()}&socket_timeout=5")
    try:
        now = time.time()
        first, second = make_code(now), make_code(now)
        await store.put_code(first)
        await store.put_code(second)
        assert await store.take_code(make_code(now).code_hash) is None  # its script loaded
        # Under load (the last pipeline held several), so the next two queue and share one.
        await asyncio.gather(*(store.family_revoked(new_id()) for _ in range(20)))
        sizes: list[int] = []
        store.on_pipeline = sizes.append
        proxy.armed = True
        async with asyncio.timeout(10):
            results = await asyncio.gather(
                store.take_code(first.code_hash), store.take_code(second.code_hash), return_exceptions=True
            )
        assert sizes[0] == 2
        assert results[0] == first
        assert isinstance(results[1], StoreUnavailable)
        # The store serves again on a new connection; Redis ran both (the reply was lost).
        assert isinstance(await store.take_code(first.code_hash), CodeReused)
        assert isinstance(await store.take_code(second.code_hash), CodeReused)
    finally:
        await store.aclose()
        await proxy.close()

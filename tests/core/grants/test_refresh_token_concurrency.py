"""Concurrent refreshes of one token (Hydra #3604, Keycloak CVE-2026-1035): the compare-and-set
decides, a lost race is never a 5xx, and no second live branch of a family ever exists.

Run through ``httpx.ASGITransport`` against the middleware with two stores: the plain
``MemoryStore`` (requests barely interleave) and a ``MemoryStore`` that yields before every
operation like a networked store (every request passes the read before any compare-and-set,
so 19 of 20 lose the race at the compare-and-set itself); and once through a real uvicorn
server on a loopback port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn

from attesto_asgi import AttestoMiddleware, Config, MemoryStore
from attesto_asgi.events import FAMILY_REVOKED, REFRESH_REUSE_DETECTED, REFRESH_ROTATED
from attesto_asgi.model import AlreadyRotated, Rotated
from tests.core.grants.refresh_support import (
    REFRESH_CLIENTS,
    Env,
    RecordingHooks,
    YieldingMemoryStore,
    family_of,
    post_refresh,
    record_of,
)
from tests.helpers import FakeClock, access_token_revoked, free_port, jwt_claims, not_found_app, standard_clients

N = 20


@pytest.fixture(params=["memory", "yielding"])
async def make_env(
    request: pytest.FixtureRequest, make_config: Callable[..., Config], clock: FakeClock
) -> AsyncIterator[Callable[..., Env]]:
    opened: list[Env] = []
    store_class = MemoryStore if request.param == "memory" else YieldingMemoryStore

    def make(**overrides: Any) -> Env:
        hooks = RecordingHooks()
        options: dict[str, Any] = {
            "clients": standard_clients() + REFRESH_CLIENTS,
            "hooks": hooks,
            "store": store_class(clock=clock, warn=False),
        }
        options.update(overrides)
        env = Env(make_config(**options), hooks)
        opened.append(env)
        return env

    yield make
    for env in opened:
        await env.aclose()


def live_records(config: Config, family_id: str) -> list[Any]:
    """White-box: every unrotated refresh record of a family in the memory store."""
    store = config.backend
    assert isinstance(store, MemoryStore)
    return [r for (fam, _), r in store._refresh.items() if fam == family_id and r.rotated_at is None]


def rotations(config: Config) -> list[Any] | None:
    store = config.backend
    return store.rotations if isinstance(store, YieldingMemoryStore) else None


async def test_twenty_concurrent_refreshes_strict(make_env: Callable[..., Env]) -> None:
    env = make_env()
    rt0 = await env.seed()
    responses = await asyncio.gather(*(env.refresh(rt0) for _ in range(N)))
    statuses = [r.status_code for r in responses]
    assert all(s < 500 for s in statuses), statuses
    winners = [r for r in responses if r.status_code == 200]
    # One request wins the compare-and-set and is answered; the losers' reuse revokes the
    # family, and with it the winner's tokens (the successor is in it, the access token
    # carries it).
    assert len(winners) == 1
    losers = [r for r in responses if r.status_code != 200]
    assert {r.status_code for r in losers} == {400}
    assert {r.json()["error"] for r in losers} == {"invalid_grant"}
    # The losers presented an already-rotated token outside any grace: reuse, family revoked
    # (once). A loser that reads the token after the revocation finds no token at all.
    assert await env.config.backend.family_revoked(family_of(rt0))
    assert len(env.hooks.named(REFRESH_ROTATED)) == len(winners)
    assert 1 <= len(env.hooks.named(REFRESH_REUSE_DETECTED)) <= N - 1
    assert len(env.hooks.named(FAMILY_REVOKED)) == 1
    # The winner's refresh token and access token died with the family.
    for winner in winners:
        body = winner.json()
        assert (await env.refresh(body["refresh_token"])).status_code == 400
        assert await access_token_revoked(env.config.backend, body["access_token"])
    cas = rotations(env.config)
    if cas is not None:  # every request reached the compare-and-set; exactly one won it
        assert len(cas) == N
        assert sum(isinstance(r, Rotated) for r in cas) == 1
        assert sum(isinstance(r, AlreadyRotated) for r in cas) == N - 1
        assert len(env.hooks.named(REFRESH_REUSE_DETECTED)) == N - 1


async def test_twenty_concurrent_retries_inside_the_grace_window(make_env: Callable[..., Env]) -> None:
    env = make_env(refresh_grace=30)
    rt0 = await env.seed()
    responses = await asyncio.gather(*(env.refresh(rt0) for _ in range(N)))
    assert [r.status_code for r in responses] == [200] * N
    bodies = [r.json() for r in responses]
    successors = {b["refresh_token"] for b in bodies}
    assert len(successors) == 1  # all get the same successor
    jtis = {jwt_claims(b["access_token"])["jti"] for b in bodies}
    assert len(jtis) == N  # each a new access token
    assert env.hooks.named(REFRESH_REUSE_DETECTED) == []
    assert [e.data["grace_retry"] for e in env.hooks.named(REFRESH_ROTATED)].count(False) == 1
    # No second live branch: the family holds exactly one unrotated token, the shared successor.
    [live] = live_records(env.config, family_of(rt0))
    [rt1] = successors
    assert live == await record_of(env.config, rt1)
    cas = rotations(env.config)
    if cas is not None:
        assert sum(isinstance(r, Rotated) for r in cas) == 1
        assert all(isinstance(r, AlreadyRotated) and not r.successor_used for r in cas[1:])
    # The branch continues normally; once it moved on, the old token is reuse.
    rt2 = (await env.refresh(rt1)).json()["refresh_token"]
    assert (await env.refresh(rt0)).json()["error"] == "invalid_grant"
    assert (await env.refresh(rt2)).json()["error"] == "invalid_grant"


async def test_concurrent_use_of_successor_and_retry_of_predecessor(make_env: Callable[..., Env]) -> None:
    """Inside the window, RT1 is used while RT0 is retried. Whatever order the store sees,
    nothing forks: RT0's retries get RT1 or are reuse; RT1's uses all get one RT2."""
    env = make_env(refresh_grace=30)
    rt0 = await env.seed()
    rt1 = (await env.refresh(rt0)).json()["refresh_token"]
    from_rt1 = [env.refresh(rt1) for _ in range(5)]
    from_rt0 = [env.refresh(rt0) for _ in range(5)]
    responses = await asyncio.gather(*from_rt1, *from_rt0)
    assert all(r.status_code in (200, 400) for r in responses)
    rt1_answers = {r.json()["refresh_token"] for r in responses[: len(from_rt1)] if r.status_code == 200}
    rt0_answers = {r.json()["refresh_token"] for r in responses[len(from_rt1) :] if r.status_code == 200}
    assert len(rt1_answers) <= 1
    assert rt1 not in rt1_answers
    assert rt0_answers <= {rt1}
    live = live_records(env.config, family_of(rt0))
    if await env.config.backend.family_revoked(family_of(rt0)):
        assert all([await record_of(env.config, t) is None for t in (rt0, rt1, *rt1_answers)])
    else:
        assert [r.token_hash for r in live] == [(await record_of(env.config, t)).token_hash for t in rt1_answers]  # type: ignore[union-attr]


async def test_concurrent_grace_retries_mixed_with_another_client(make_env: Callable[..., Env]) -> None:
    """Another client never gets a token: while the token is live it is refused without
    burning it; once rotated, its presentation is reuse and the family dies."""
    env = make_env(refresh_grace=30)
    rt0 = await env.seed()
    jobs = [post_refresh(env.http, rt0, client_id="app") for _ in range(10)]
    jobs += [post_refresh(env.http, rt0, client_id="other") for _ in range(10)]
    responses = await asyncio.gather(*jobs)
    assert all(r.status_code in (200, 400) for r in responses)
    assert all(r.status_code == 400 for r in responses[10:])
    successors = {r.json()["refresh_token"] for r in responses[:10] if r.status_code == 200}
    assert len(successors) <= 1
    family = family_of(rt0)
    reused = env.hooks.named(REFRESH_REUSE_DETECTED)
    assert bool(reused) == await env.config.backend.family_revoked(family)
    assert len(env.hooks.named(FAMILY_REVOKED)) == (1 if reused else 0)
    assert len(live_records(env.config, family)) == 1  # revoked or not, never a second branch
    for rt1 in successors:
        assert (await env.refresh(rt1)).status_code == (400 if reused else 200)


async def test_concurrent_refreshes_of_separate_families_all_succeed(make_env: Callable[..., Env]) -> None:
    env = make_env()
    tokens = [await env.seed(subject=f"user-{i}") for i in range(N)]
    responses = await asyncio.gather(*(env.refresh(t) for t in tokens))
    assert [r.status_code for r in responses] == [200] * N
    assert env.hooks.named(REFRESH_REUSE_DETECTED) == []


# ----------------------------------------------------------------- a real server


@pytest.fixture
async def served(make_config: Callable[..., Config]) -> AsyncIterator[Callable[..., Any]]:
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def serve(**overrides: Any) -> tuple[Env, httpx.AsyncClient]:
        hooks = RecordingHooks()
        options: dict[str, Any] = {"clients": standard_clients() + REFRESH_CLIENTS, "hooks": hooks}
        options.update(overrides)
        config = make_config(**options)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(AttestoMiddleware(not_found_app, config), host="127.0.0.1", port=port, log_level="error")
        )
        task = asyncio.create_task(server.serve())
        servers.append((server, task))
        for _ in range(500):  # up to 5 s for the server to bind
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=httpx.Limits(max_connections=N))
        return Env(config, hooks, http), http

    yield serve
    for server, task in servers:
        server.should_exit = True
        await task


async def test_twenty_concurrent_refreshes_through_uvicorn(served: Callable[..., Any]) -> None:
    env, http = await served()
    try:
        rt0 = await env.seed()
        responses = await asyncio.gather(*(post_refresh(http, rt0) for _ in range(N)))
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) <= 1
        assert statuses.count(400) >= N - 1
        assert await env.config.backend.family_revoked(family_of(rt0))
    finally:
        await http.aclose()


async def test_twenty_concurrent_grace_retries_through_uvicorn(served: Callable[..., Any]) -> None:
    env, http = await served(refresh_grace=30)
    try:
        rt0 = await env.seed()
        responses = await asyncio.gather(*(post_refresh(http, rt0) for _ in range(N)))
        assert [r.status_code for r in responses] == [200] * N
        assert len({r.json()["refresh_token"] for r in responses}) == 1
        assert not await env.config.backend.family_revoked(family_of(rt0))
        assert len(live_records(env.config, family_of(rt0))) == 1
    finally:
        await http.aclose()

"""Redis outages through the real middleware (issue 5, DESIGN §3.4): while the private
redis-server is down every request is 503 ``temporarily_unavailable`` with ``Retry-After``,
no response carries a token whose records were not stored, and once Redis is back the same
process serves again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from attesto_asgi_redis import RedisStore

from attesto_asgi import AttestoMiddleware, Config, KeySet, StoreUnavailable, issue_code
from attesto_asgi._secrets import new_id, token_hash
from tests.core.grants.authcode_helpers import pkce_pair
from tests.helpers import ISSUER, http_client, not_found_app
from tests.stores.mp_worker import SPA_REDIRECT, clients
from tests.stores.redis_server import RedisServer


class Endpoint:
    def __init__(self, config: Config, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http

    @property
    def store(self) -> RedisStore:
        store = self.config.backend
        assert isinstance(store, RedisStore)
        return store

    async def code(self) -> tuple[str, str]:
        verifier, challenge = pkce_pair()
        code = await issue_code(
            self.config,
            client_id="spa",
            redirect_uri=SPA_REDIRECT,
            subject="alice",
            scope="openid offline_access",
            code_challenge=challenge,
            auth_time=self.config.clock() - 30,
        )
        return code, verifier

    async def redeem(self, code: str, verifier: str) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": "spa",
            "code_verifier": verifier,
            "redirect_uri": SPA_REDIRECT,
        }
        return await self.http.post("/oauth/token", data=form)

    async def assert_stored(self, r: httpx.Response) -> None:
        """A token response's refresh token exists, live, in Redis."""
        assert r.status_code == 200, r.text
        refresh = r.json()["refresh_token"]
        family_id = refresh.split(".")[0]
        record = await self.store.get_refresh(family_id, token_hash(refresh))
        assert record is not None, "a refresh token was issued but its record is not in the store"


async def staggered(
    endpoint: Endpoint, codes: list[tuple[str, str]], waves: int = 4
) -> list[asyncio.Future[httpx.Response]]:
    """Start the redemptions in waves, each once the store has sent a pipeline since the
    previous one: concurrent operations share a pipeline (auto-pipelining), so requests
    started together advance together; waves keep them at different stages."""
    inflight: list[asyncio.Future[httpx.Response]] = []
    size = -(-len(codes) // waves)
    sent = asyncio.Event()
    endpoint.store.on_pipeline = lambda _size: sent.set()
    try:
        for start in range(0, len(codes), size):
            sent.clear()
            inflight += [asyncio.ensure_future(endpoint.redeem(*c)) for c in codes[start : start + size]]
            await sent.wait()  # this wave's first operations reached Redis
    finally:
        endpoint.store.on_pipeline = None
    return inflight


def assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "temporarily_unavailable"
    assert int(r.headers["retry-after"]) > 0
    assert "access_token" not in r.text


@pytest.fixture
async def endpoint(private_redis: RedisServer, tmp_path: Path) -> AsyncIterator[Endpoint]:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(KeySet.generate("ES256").private_jwks()))
    # Short socket timeouts: a paused server is noticed quickly.
    url = f"{private_redis.url}/0?prefix=f{new_id()}&socket_timeout=0.3&socket_connect_timeout=0.3"
    config = Config(issuer=ISSUER, keys=KeySet.load(keys), store=url, clients=clients())
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        try:
            yield Endpoint(config, http)
        finally:
            await config.backend.aclose()


async def test_stopped_redis_is_503_and_the_endpoint_recovers(endpoint: Endpoint, private_redis: RedisServer) -> None:
    for _ in range(3):
        await endpoint.assert_stored(await endpoint.redeem(*await endpoint.code()))
    pending = [await endpoint.code() for _ in range(24)]

    # Stop the server as soon as the first of 20 concurrent requests completes, so the rest
    # are caught at every stage: each one either completed (200) or is 503, never a 500.
    inflight = await staggered(endpoint, pending[:20])
    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
    private_redis.stop()  # blocking on purpose: no request advances until the server is gone
    statuses: list[int] = []
    for r in await asyncio.gather(*inflight):
        statuses.append(r.status_code)
        if r.status_code != 200:
            assert_unavailable(r)
    assert 503 in statuses, statuses

    # During the outage: every redemption is 503, and the host API raises.
    for c in pending[20:]:
        assert_unavailable(await endpoint.redeem(*c))
    with pytest.raises(StoreUnavailable):
        await endpoint.code()

    # Restarted (same port, empty): the same process, middleware and store serve again.
    await asyncio.to_thread(private_redis.start)
    for _ in range(3):
        await endpoint.assert_stored(await endpoint.redeem(*await endpoint.code()))


async def test_paused_redis_never_yields_an_unstored_token(endpoint: Endpoint, private_redis: RedisServer) -> None:
    assert private_redis.proc is not None
    pid = private_redis.proc.pid
    codes = [await endpoint.code() for _ in range(26)]
    racing = await staggered(endpoint, codes[:20])
    # Pause as soon as the first request completes: the others are mid-request, some with
    # their code taken and their tokens not yet stored. Replies may be lost.
    await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
    os.kill(pid, signal.SIGSTOP)
    try:
        late = [asyncio.ensure_future(endpoint.redeem(*c)) for c in codes[20:]]
        late_results = await asyncio.gather(*late)
        racing_results = await asyncio.gather(*racing)
    finally:
        os.kill(pid, signal.SIGCONT)
    for r in late_results:  # sent while paused: all time out
        assert_unavailable(r)
    assert 200 in [r.status_code for r in racing_results]
    for r in racing_results:
        if r.status_code == 200:
            # Every token handed out has its record in Redis (checked now that it answers).
            await endpoint.assert_stored(r)
        else:
            assert_unavailable(r)
    # Serving again, no restart needed.
    await endpoint.assert_stored(await endpoint.redeem(*await endpoint.code()))

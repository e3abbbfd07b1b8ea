"""Concurrent redemptions of one code, through the middleware (LESSONS: read-then-write is a race)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from attesto_asgi import AttestoMiddleware, Config, MemoryStore
from attesto_asgi.core.refresh import split_refresh_token
from attesto_asgi.model import CodeRecord, CodeReused, RefreshRecord
from attesto_asgi.store import RotateResult
from tests.core.grants.authcode_helpers import RecordingHooks, authcode_clients, names, redeem, spa_code
from tests.helpers import FakeClock, access_token_revoked, http_client, not_found_app

N = 20


class InterleavingStore(MemoryStore):
    """The memory store with a scheduling point before every operation, as a networked
    store has: concurrent requests interleave between store calls (each call stays atomic)."""

    async def _yield(self) -> None:
        await asyncio.sleep(0)

    async def take_code(self, code_hash: str) -> CodeRecord | CodeReused | None:
        await self._yield()
        return await super().take_code(code_hash)

    async def revoke_family(self, family_id: str, until: float) -> bool:
        await self._yield()
        return await super().revoke_family(family_id, until)

    async def family_revoked(self, family_id: str) -> bool:
        await self._yield()
        return await super().family_revoked(family_id)

    async def put_refresh(self, record: RefreshRecord) -> bool:
        await self._yield()
        return await super().put_refresh(record)

    async def rotate_refresh(
        self, family_id: str, old_hash: str, successor: RefreshRecord, sealed: bytes | None
    ) -> RotateResult:
        await self._yield()
        return await super().rotate_refresh(family_id, old_hash, successor, sealed)


async def race(config: Config, clock: FakeClock, scope: str) -> tuple[list[httpx.Response], str]:
    code = await spa_code(config, clock, scope=scope)
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        responses = await asyncio.gather(*(redeem(http, code) for _ in range(N)))
    return list(responses), code


async def test_twenty_concurrent_redemptions_one_winner_then_revoked(
    make_config: Callable[..., Config], clock: FakeClock
) -> None:
    hooks = RecordingHooks()
    config = make_config(clients=authcode_clients(), hooks=hooks)
    store = config.backend
    responses, _ = await race(config, clock, "openid offline_access")

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 400: N - 1}
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}

    winner = next(r.json() for r in responses if r.status_code == 200)
    split = split_refresh_token(winner["refresh_token"])
    assert split is not None
    family_id = split[0]
    # The losers' presentations were reuse: the winner's tokens are all revoked.
    assert await store.family_revoked(family_id)
    assert await access_token_revoked(store, winner["access_token"])
    assert await store.get_refresh(*split) is None
    counts = Counter(names(hooks.events))
    assert counts["token_issued"] == 1
    assert counts["refresh_issued"] == 1
    assert counts["code_reuse_detected"] == N - 1
    assert counts["family_revoked"] == 1  # one sticky write; the rest found it revoked
    assert counts["token_denied"] == N - 1


@pytest.mark.parametrize("scope", ["openid offline_access", "openid"])
async def test_interleaved_redemptions_never_leave_live_tokens(
    make_config: Callable[..., Config], clock: FakeClock, scope: str
) -> None:
    hooks = RecordingHooks()
    store = InterleavingStore(clock=clock, warn=False)
    config = make_config(clients=authcode_clients(), hooks=hooks, store=store)
    responses, _ = await race(config, clock, scope)

    bodies: list[dict[str, Any]] = [r.json() for r in responses]
    assert all(r.status_code in (200, 400) for r in responses)
    # Exactly one request took the code; the other nineteen found its tombstone.
    assert Counter(names(hooks.events))["code_reuse_detected"] == N - 1
    assert sum("access_token" in b for b in bodies) <= 1
    assert all(b.get("error") == "invalid_grant" for b in bodies if "access_token" not in b)
    taken = [e for e in hooks.events if e.name == "token_denied" and "during the request" in e.data["reason"]]
    taker = next((b for b in bodies if "access_token" in b), None)
    assert (taker is None) == (len(taken) == 1)
    if taker is not None:
        # It finished (without a refresh token it always does: put_refresh is the only store
        # write after take_code): its tokens carry the family and are revoked now.
        assert await access_token_revoked(store, taker["access_token"])
        if "refresh_token" in taker:
            split = split_refresh_token(taker["refresh_token"])
            assert split is not None
            assert await store.get_refresh(*split) is None
    else:
        # The family was revoked before put_refresh: it failed as a whole, as invalid_grant.
        assert "offline_access" in scope
        assert "token_issued" not in names(hooks.events)
    reuse = next(e for e in hooks.events if e.name == "code_reuse_detected")
    assert await store.family_revoked(reuse.data["family_id"])

"""The refresh_token grant through real HTTP: every rule of RFC 6749 §6 / RFC 9700 §4.14.2 as built."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import msgspec
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet

from attesto_asgi import Client, Config, MemoryStore, StoreUnavailable
from attesto_asgi.config import MAX_REFRESH_GRACE
from attesto_asgi.core.id_token import half_hash
from attesto_asgi.events import FAMILY_REVOKED, REFRESH_REUSE_DETECTED, REFRESH_ROTATED, TOKEN_DENIED
from attesto_asgi.model import RefreshRecord
from attesto_asgi.store import RotateResult
from tests.core.grants.refresh_support import (
    API,
    BILLING,
    REFRESH_CLIENTS,
    Env,
    RecordingHooks,
    family_of,
    record_of,
)
from tests.families import CREDENTIALS, code_grant, family_clients
from tests.helpers import FakeClock, LoadFails, access_token_revoked, jwt_claims, standard_clients

MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(make_config: Callable[..., Config]) -> AsyncIterator[MakeEnv]:
    opened: list[Env] = []

    async def make(**overrides: Any) -> Env:
        hooks = RecordingHooks()
        options: dict[str, Any] = {"clients": standard_clients() + REFRESH_CLIENTS, "hooks": hooks}
        options.update(overrides)
        env = Env(make_config(**options), hooks)
        opened.append(env)
        return env

    yield make
    for env in opened:
        await env.aclose()


@pytest.fixture
async def env(make_env: MakeEnv) -> Env:
    return await make_env()


def verified(config: Config, token: str, typ: str) -> dict[str, Any]:
    """The claims of a JWT after checking its signature against the published JWKS and its typ."""
    decoded = jwt.decode(token, JoseKeySet.import_key_set(cast(Any, config.keys.public_jwks())))
    assert decoded.header["typ"] == typ
    return dict(decoded.claims)


async def ok(env: Env, token: str, **kwargs: Any) -> dict[str, Any]:
    response = await env.refresh(token, **kwargs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def denied(env: Env, token: str | None, error: str, **kwargs: Any) -> dict[str, Any]:
    response = await env.refresh(token, **kwargs)
    assert response.status_code == (401 if error == "invalid_client" else 400), response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert response.headers["cache-control"] == "no-store"
    return body


# ----------------------------------------------------------------- rotation


async def test_refresh_rotates_and_answers_rfc6749_section_5_1(env: Env, clock: FakeClock) -> None:
    rt0 = await env.seed(auth_time=1_700_000_000, acr="urn:mfa", amr=("pwd", "otp"), sid="s-1")
    clock.advance(10)
    response = await env.refresh(rt0)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == env.config.access_token_ttl
    assert body["scope"] == "openid offline_access read"
    rt1 = body["refresh_token"]
    assert rt1 != rt0
    assert family_of(rt1) == family_of(rt0)
    claims = verified(env.config, body["access_token"], "at+jwt")
    assert claims["sub"] == "alice"
    assert claims["client_id"] == "app"
    assert claims["aud"] == "app"
    assert claims["iat"] == int(clock.now)
    # auth_time / acr / amr carry over unchanged; never the refresh time.
    assert claims["auth_time"] == 1_700_000_000
    assert claims["acr"] == "urn:mfa"
    assert claims["amr"] == ["pwd", "otp"]
    # The presented token is now rotated, its successor live and one generation on.
    old = await record_of(env.config, rt0)
    new = await record_of(env.config, rt1)
    assert old is not None
    assert new is not None
    assert old.rotated_at == clock.now
    assert old.successor_hash == new.token_hash
    assert new.rotated_at is None
    assert new.generation == 1
    assert (new.auth_time, new.acr, new.amr, new.sid) == (1_700_000_000, "urn:mfa", ("pwd", "otp"), "s-1")
    [event] = env.hooks.named(REFRESH_ROTATED)
    assert event.client_id == "app"
    assert event.grant_type == "refresh_token"
    assert event.subject == "alice"
    assert event.data["family_id"] == family_of(rt0)
    assert event.data["generation"] == 1
    assert event.data["jti"] == claims["jti"]
    assert event.data["grace_retry"] is False


async def test_each_successor_rotates_again(env: Env) -> None:
    token = await env.seed()
    seen = {token}
    for generation in range(1, 6):
        token = (await ok(env, token))["refresh_token"]
        assert token not in seen
        seen.add(token)
        record = await record_of(env.config, token)
        assert record is not None
        assert record.generation == generation


async def test_public_client_can_refresh(env: Env) -> None:
    rt0 = await env.seed(client_id="spa", scope=("openid", "offline_access"))
    body = await ok(env, rt0, client_id="spa")
    assert jwt_claims(body["access_token"])["client_id"] == "spa"
    await ok(env, body["refresh_token"], client_id="spa")


async def test_access_token_carries_the_family(env: Env) -> None:
    rt0 = await env.seed()
    body = await ok(env, rt0)
    assert jwt_claims(body["access_token"])["fid"] == family_of(rt0)
    store = env.config.backend
    assert not await access_token_revoked(store, body["access_token"])
    await store.revoke_family(family_of(rt0), env.config.clock() + 86400)
    assert await access_token_revoked(store, body["access_token"])


# ----------------------------------------------------------------- request checks


async def test_missing_refresh_token_is_invalid_request(env: Env) -> None:
    await denied(env, None, "invalid_request")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "a" * 22 + "." + "b" * 42,
        "a" * 22 + ".." + "b" * 43,
        "a" * 22 + "." + "b" * 43 + "=",
        "a" * 22 + "." + "b" * 43 + "\n",
    ],
)
async def test_malformed_token_is_invalid_grant(env: Env, token: str) -> None:
    body = await denied(env, token, "invalid_grant")
    assert token not in str(body)


async def test_unknown_token_is_invalid_grant(env: Env) -> None:
    rt0 = await env.seed()
    forged = family_of(rt0) + "." + "A" * 43
    await denied(env, forged, "invalid_grant")
    await denied(env, "B" * 22 + "." + "A" * 43, "invalid_grant")
    # Guessing in a live family neither revokes nor burns anything.
    await ok(env, rt0)
    assert env.hooks.named(REFRESH_REUSE_DETECTED) == []


async def test_token_of_another_client_is_invalid_grant_and_not_burned(env: Env) -> None:
    rt0 = await env.seed(client_id="app")
    await denied(env, rt0, "invalid_grant", client_id="other")
    [event] = env.hooks.named(TOKEN_DENIED)
    assert event.client_id == "other"
    assert "another client" in event.data["reason"]
    await ok(env, rt0, client_id="app")


async def test_client_without_the_grant_is_unauthorized_client(env: Env) -> None:
    rt0 = await env.seed(client_id="nogrant")
    await denied(env, rt0, "unauthorized_client", client_id="nogrant")


async def test_wrong_client_secret_is_invalid_client(env: Env) -> None:
    rt0 = await env.seed()
    response = await env.http.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": rt0}, auth=("app", "wrong")
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    await ok(env, rt0)


async def test_omitted_scope_is_the_original_scope(env: Env) -> None:
    rt0 = await env.seed(scope=("openid", "offline_access", "read", "write"))
    body = await ok(env, rt0)
    assert body["scope"] == "openid offline_access read write"


async def test_scope_may_narrow_and_the_successor_keeps_the_original_scope(env: Env) -> None:
    rt0 = await env.seed(scope=("openid", "offline_access", "read", "write"))
    body = await ok(env, rt0, scope="read")
    assert body["scope"] == "read"
    assert jwt_claims(body["access_token"])["scope"] == "read"
    # RFC 6749 §6: the new refresh token's scope is identical to the one presented.
    successor = await record_of(env.config, body["refresh_token"])
    assert successor is not None
    assert successor.scope == ("openid", "offline_access", "read", "write")
    again = await ok(env, body["refresh_token"])
    assert again["scope"] == "openid offline_access read write"


@pytest.mark.parametrize("scope", ["read write", "admin", "openid offline_access read profile"])
async def test_wider_scope_is_invalid_scope_and_not_burned(env: Env, scope: str) -> None:
    rt0 = await env.seed(scope=("openid", "offline_access", "read"))
    await denied(env, rt0, "invalid_scope", scope=scope)
    record = await record_of(env.config, rt0)
    assert record is not None
    assert record.rotated_at is None
    await ok(env, rt0)


async def test_malformed_scope_is_invalid_scope(env: Env) -> None:
    rt0 = await env.seed()
    await denied(env, rt0, "invalid_scope", scope='read "quoted"')
    await ok(env, rt0)


class ScopePolicyHooks(RecordingHooks):
    """A host whose scope policy on refresh drops ``write`` (withdrawn consent) and, when
    ``widen`` is set, tries to add ``admin``."""

    widen = False

    async def authorize_scope(
        self, client: Client, requested: tuple[str, ...] | None, *, grant_type: str, subject: str | None = None
    ) -> tuple[str, ...]:
        assert grant_type == "refresh_token"
        assert subject == "alice"
        assert requested is not None
        granted = tuple(s for s in requested if s != "write")
        return (*granted, "admin") if self.widen else granted


async def test_host_scope_policy_may_narrow_but_never_widen(make_env: MakeEnv) -> None:
    hooks = ScopePolicyHooks()
    env = await make_env(hooks=hooks)
    env.hooks = hooks
    rt0 = await env.seed(scope=("openid", "offline_access", "read", "write"))
    body = await ok(env, rt0)
    assert body["scope"] == "openid offline_access read"
    successor = await record_of(env.config, body["refresh_token"])
    assert successor is not None
    assert "write" in successor.scope
    hooks.widen = True
    await denied(env, body["refresh_token"], "invalid_scope")
    hooks.widen = False
    await ok(env, body["refresh_token"])


async def test_resource_may_narrow_the_original_resources(env: Env) -> None:
    rt0 = await env.seed(resource=(API, BILLING))
    body = await ok(env, rt0)
    assert jwt_claims(body["access_token"])["aud"] == [API, BILLING]
    body = await ok(env, body["refresh_token"], resource=[BILLING])
    assert jwt_claims(body["access_token"])["aud"] == BILLING
    successor = await record_of(env.config, body["refresh_token"])
    assert successor is not None
    assert successor.resource == (API, BILLING)


@pytest.mark.parametrize(
    ("granted", "requested"),
    [
        ((API,), [BILLING]),
        ((API,), [API, BILLING]),
        ((), [API]),
        ((API,), ["https://evil.example.com"]),
    ],
)
async def test_wider_resource_is_invalid_target_and_not_burned(
    env: Env, granted: tuple[str, ...], requested: list[str]
) -> None:
    rt0 = await env.seed(resource=granted)
    await denied(env, rt0, "invalid_target", resource=requested)
    await ok(env, rt0)


async def test_malformed_resource_is_invalid_target(env: Env) -> None:
    rt0 = await env.seed(resource=(API,))
    await denied(env, rt0, "invalid_target", resource=["https://api.example.com/#frag"])
    await ok(env, rt0)


async def test_inactive_subject_is_invalid_grant_and_not_burned(env: Env) -> None:
    rt0 = await env.seed(subject="bob")
    env.hooks.disabled.add("bob")
    await denied(env, rt0, "invalid_grant")
    assert "no longer active" in env.hooks.named(TOKEN_DENIED)[0].data["reason"]
    env.hooks.disabled.clear()
    await ok(env, rt0)


# ----------------------------------------------------------------- lifetimes


async def test_expired_refresh_token_is_invalid_grant(env: Env, clock: FakeClock) -> None:
    rt0 = await env.seed()
    clock.advance(env.config.refresh_token_ttl)
    await denied(env, rt0, "invalid_grant")
    assert env.hooks.named(REFRESH_REUSE_DETECTED) == []


async def test_expiry_slides_with_each_rotation_but_never_past_the_family(env: Env, clock: FakeClock) -> None:
    config = env.config
    start = clock.now
    family_end = start + config.refresh_family_ttl
    token = await env.seed()
    # Each use within 13 days slides the expiry to 14 days from the rotation ...
    for _ in range(2):
        clock.advance(13 * 86400)
        token = (await ok(env, token))["refresh_token"]
        record = await record_of(config, token)
        assert record is not None
        assert record.expires_at == min(clock.now + config.refresh_token_ttl, family_end)
        assert record.family_expires_at == family_end
    # ... day 26 now: the successor ends with the family at day 30, not day 40.
    assert record is not None
    assert record.expires_at == family_end
    clock.advance(family_end - clock.now - 1)
    body = await ok(env, token)
    # The access token never outlives the family either.
    assert jwt_claims(body["access_token"])["exp"] == int(family_end)
    clock.advance(1)
    await denied(env, body["refresh_token"], "invalid_grant")


async def test_per_client_lifetimes(env: Env, clock: FakeClock) -> None:
    """``short``: 60 s sliding refresh tokens, a 300 s family, 30 s access tokens."""
    start = clock.now
    token = await env.seed(client_id="short")
    for _ in range(4):
        clock.advance(59)
        body = await ok(env, token, client_id="short")
        assert body["expires_in"] == 30
        token = body["refresh_token"]
        record = await record_of(env.config, token)
        assert record is not None
        assert record.expires_at == clock.now + 60
    clock.advance(59)  # t = 295: the successor is capped at the family's end (t = 300)
    token = (await ok(env, token, client_id="short"))["refresh_token"]
    record = await record_of(env.config, token)
    assert record is not None
    assert record.expires_at == start + 300
    clock.advance(5)
    await denied(env, token, "invalid_grant", client_id="short")


async def test_idle_token_expires_even_inside_its_family(env: Env, clock: FakeClock) -> None:
    token = await env.seed(client_id="short")
    clock.advance(60)
    await denied(env, token, "invalid_grant", client_id="short")


# ----------------------------------------------------------------- reuse detection


@pytest.mark.parametrize("replayed", [0, 1])
async def test_three_generations_within_one_second_then_a_replay_revokes_the_family(
    env: Env, clock: FakeClock, replayed: int
) -> None:
    """Keycloak #50999: same-second rotations must not confuse generations."""
    rt0 = await env.seed()
    clock.advance(0.2)
    first = await ok(env, rt0)
    clock.advance(0.2)
    second = await ok(env, first["refresh_token"])
    rt1, rt2 = first["refresh_token"], second["refresh_token"]
    clock.advance(0.2)
    await denied(env, [rt0, rt1][replayed], "invalid_grant")
    [reuse] = env.hooks.named(REFRESH_REUSE_DETECTED)
    assert reuse.data["family_id"] == family_of(rt0)
    assert reuse.data["generation"] == replayed
    assert len(env.hooks.named(FAMILY_REVOKED)) == 1
    assert await env.config.backend.family_revoked(family_of(rt0))
    # RT2, never used, is dead with its family; so are the family's access tokens.
    await denied(env, rt2, "invalid_grant")
    for body in (first, second):
        assert await access_token_revoked(env.config.backend, body["access_token"])
    # Further replays: still invalid_grant, the family is revoked only once.
    await denied(env, rt0, "invalid_grant")
    await denied(env, rt1, "invalid_grant")
    assert len(env.hooks.named(FAMILY_REVOKED)) == 1


async def test_reuse_detection_leaves_other_families_alone(env: Env) -> None:
    victim = await env.seed(subject="alice")
    bystander = await env.seed(subject="alice")
    await ok(env, victim)
    await denied(env, victim, "invalid_grant")
    await ok(env, bystander)


async def test_reuse_by_another_client_revokes_the_family(env: Env) -> None:
    rt0 = await env.seed(client_id="app")
    rt1 = (await ok(env, rt0))["refresh_token"]
    await denied(env, rt0, "invalid_grant", client_id="other")
    [reuse] = env.hooks.named(REFRESH_REUSE_DETECTED)
    assert reuse.client_id == "other"
    assert reuse.data["token_client_id"] == "app"
    await denied(env, rt1, "invalid_grant")


async def test_reuse_with_a_bad_scope_is_still_reuse(env: Env) -> None:
    rt0 = await env.seed()
    rt1 = (await ok(env, rt0))["refresh_token"]
    await denied(env, rt0, "invalid_grant", scope="admin")
    await denied(env, rt1, "invalid_grant")


async def test_reuse_events_carry_no_secret(env: Env) -> None:
    rt0 = await env.seed()
    body = await ok(env, rt0)
    await denied(env, rt0, "invalid_grant")
    dump = msgspec.json.encode(env.hooks.events).decode()
    for secret in (rt0, body["refresh_token"], body["access_token"], rt0.split(".")[1]):
        assert secret not in dump
    names = [e.name for e in env.hooks.events]
    assert names == [REFRESH_ROTATED, REFRESH_REUSE_DETECTED, FAMILY_REVOKED, TOKEN_DENIED]


async def test_revoked_family_is_invalid_grant_without_reuse_events(env: Env) -> None:
    rt0 = await env.seed()
    rt1 = (await ok(env, rt0))["refresh_token"]
    await env.config.backend.revoke_family(family_of(rt0), env.config.clock() + 86400)
    await denied(env, rt1, "invalid_grant")
    await denied(env, rt0, "invalid_grant")
    assert env.hooks.named(REFRESH_REUSE_DETECTED) == []


class CollidingClaimsHooks(RecordingHooks):
    """A host bug: an ID-token claim that collides with a reserved one (the mint fails)."""

    broken = True

    async def id_token_claims(
        self, client: Client, subject: str, scope: tuple[str, ...], requested_claims: Any
    ) -> dict[str, Any]:
        return {"nonce": "from-the-hook"} if self.broken else {"locale": "en"}


async def test_a_minting_fault_does_not_burn_the_token(make_env: MakeEnv) -> None:
    """Tokens are minted before the compare-and-set: a server fault leaves the token usable."""
    hooks = CollidingClaimsHooks()
    env = await make_env(hooks=hooks, id_token_on_refresh=True)
    env.hooks = hooks
    rt0 = await env.seed()
    body = await denied(env, rt0, "invalid_request")
    assert body["error_description"] == "Unable to issue token."
    record = await record_of(env.config, rt0)
    assert record is not None
    assert record.rotated_at is None
    hooks.broken = False
    body = await ok(env, rt0)
    assert jwt_claims(body["id_token"])["locale"] == "en"


class FlakyRotateStore(MemoryStore):
    """A store whose compare-and-set cannot be reached (raises before applying anything)."""

    down = True

    async def rotate_refresh(
        self, family_id: str, old_hash: str, successor: RefreshRecord, sealed: bytes | None
    ) -> RotateResult:
        if self.down:
            raise StoreUnavailable("connection refused")
        return await super().rotate_refresh(family_id, old_hash, successor, sealed)


async def test_store_unavailable_is_503_and_changes_nothing(make_env: MakeEnv, clock: FakeClock) -> None:
    store = FlakyRotateStore(clock=clock, warn=False)
    env = await make_env(store=store)
    rt0 = await env.seed()
    response = await env.refresh(rt0)
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"].isdigit()
    record = await record_of(env.config, rt0)
    assert record is not None
    assert record.rotated_at is None
    store.down = False
    await ok(env, rt0)


# ----------------------------------------------------------------- grace window


async def test_grace_retry_returns_the_same_successor_and_a_new_access_token(
    make_env: MakeEnv, clock: FakeClock
) -> None:
    env = await make_env(refresh_grace=30)
    rt0 = await env.seed()
    first = await ok(env, rt0)
    clock.advance(29.9)  # the response was lost; the client retries just inside the window
    retry = await ok(env, rt0)
    assert retry["refresh_token"] == first["refresh_token"]
    assert retry["access_token"] != first["access_token"]
    first_at, retry_at = jwt_claims(first["access_token"]), jwt_claims(retry["access_token"])
    assert retry_at["jti"] != first_at["jti"]
    assert retry_at["scope"] == first_at["scope"]
    assert retry["scope"] == first["scope"]
    # The retry's access token belongs to the family too.
    await env.config.backend.revoke_family(family_of(rt0), clock.now + 86400)
    assert await access_token_revoked(env.config.backend, retry["access_token"])


async def test_grace_retry_event_and_no_second_branch(make_env: MakeEnv) -> None:
    env = await make_env(refresh_grace=30)
    rt0 = await env.seed()
    first = await ok(env, rt0)
    await ok(env, rt0)
    await ok(env, rt0)
    events = env.hooks.named(REFRESH_ROTATED)
    assert [e.data["grace_retry"] for e in events] == [False, True, True]
    assert env.hooks.named(REFRESH_REUSE_DETECTED) == []
    # The successor is used once; after that the retry is reuse and the family dies.
    rt2 = (await ok(env, first["refresh_token"]))["refresh_token"]
    await denied(env, rt0, "invalid_grant")
    [reuse] = env.hooks.named(REFRESH_REUSE_DETECTED)
    assert reuse.data["reason"] == "successor already used"
    await denied(env, rt2, "invalid_grant")


async def test_grace_window_is_measured_from_the_rotation(make_env: MakeEnv, clock: FakeClock) -> None:
    env = await make_env(refresh_grace=30)
    rt0 = await env.seed()
    clock.advance(1000)  # the token's age does not matter, only the time since its rotation
    await ok(env, rt0)
    clock.advance(30)
    await denied(env, rt0, "invalid_grant")
    [reuse] = env.hooks.named(REFRESH_REUSE_DETECTED)
    assert "outside the grace window" in reuse.data["reason"]


async def test_grace_never_lets_an_older_generation_back_in(make_env: MakeEnv, clock: FakeClock) -> None:
    """django-oauth-toolkit #1617: only the token just replaced may be retried."""
    env = await make_env(refresh_grace=300)
    rt0 = await env.seed()
    rt1 = (await ok(env, rt0))["refresh_token"]
    clock.advance(1)
    rt2 = (await ok(env, rt1))["refresh_token"]
    clock.advance(1)
    # RT1 (just replaced, successor unused) may be retried and gets RT2 again ...
    assert (await ok(env, rt1))["refresh_token"] == rt2
    # ... RT0 (an older generation) may not.
    await denied(env, rt0, "invalid_grant")
    await denied(env, rt2, "invalid_grant")


async def test_grace_retry_by_another_client_is_reuse(make_env: MakeEnv) -> None:
    # One audience for every client: only the client check tells the two retries apart.
    env = await make_env(refresh_grace=30, default_audience=API)
    rt0 = await env.seed(client_id="app")
    rt1 = (await ok(env, rt0))["refresh_token"]
    await denied(env, rt0, "invalid_grant", client_id="other")
    await denied(env, rt1, "invalid_grant")


@pytest.mark.parametrize(
    ("first", "retry"),
    [
        ({}, {"scope": "read"}),
        ({"scope": "read"}, {}),
        ({}, {"resource": [API]}),
        ({"scope": "openid read"}, {"scope": "read"}),
        ({}, {"scope": "admin"}),
    ],
)
async def test_grace_retry_with_another_scope_or_resource_is_reuse(
    make_env: MakeEnv, first: dict[str, Any], retry: dict[str, Any]
) -> None:
    env = await make_env(refresh_grace=30)
    rt0 = await env.seed(resource=(API, BILLING))
    rt1 = (await ok(env, rt0, **first))["refresh_token"]
    await denied(env, rt0, "invalid_grant", **retry)
    await denied(env, rt1, "invalid_grant")


async def test_grace_retry_with_the_same_narrowed_request_is_honoured(make_env: MakeEnv) -> None:
    env = await make_env(refresh_grace=30)
    rt0 = await env.seed(resource=(API, BILLING))
    first = await ok(env, rt0, scope="read openid", resource=[API])
    retry = await ok(env, rt0, scope="openid read", resource=[API])
    assert retry["refresh_token"] == first["refresh_token"]
    assert jwt_claims(retry["access_token"])["aud"] == API


async def test_deliberately_revoked_family_is_never_honoured_inside_the_window(make_env: MakeEnv) -> None:
    """django-oauth-toolkit #1816."""
    env = await make_env(refresh_grace=300)
    rt0 = await env.seed()
    rt1 = (await ok(env, rt0))["refresh_token"]
    await env.config.backend.revoke_family(family_of(rt0), env.config.clock() + 86400)
    await denied(env, rt0, "invalid_grant")
    await denied(env, rt1, "invalid_grant")
    assert env.hooks.named(REFRESH_REUSE_DETECTED) == []


async def test_grace_retry_for_a_disabled_subject_is_refused(make_env: MakeEnv) -> None:
    env = await make_env(refresh_grace=30)
    rt0 = await env.seed(subject="bob")
    await ok(env, rt0)
    env.hooks.disabled.add("bob")
    await denied(env, rt0, "invalid_grant")


async def test_successor_is_sealed_not_stored_in_the_clear(make_env: MakeEnv) -> None:
    env = await make_env(refresh_grace=30)
    rt0 = await env.seed()
    rt1 = (await ok(env, rt0))["refresh_token"]
    record = await record_of(env.config, rt0)
    assert record is not None
    assert record.sealed_successor is not None
    assert rt1.encode() not in record.sealed_successor
    assert rt1.split(".")[1].encode() not in record.sealed_successor


async def test_without_a_grace_window_no_successor_is_kept(env: Env) -> None:
    rt0 = await env.seed()
    await ok(env, rt0)
    record = await record_of(env.config, rt0)
    assert record is not None
    assert record.sealed_successor is None
    await denied(env, rt0, "invalid_grant")


async def test_grace_retry_on_a_worker_with_another_secret_key_is_reuse(make_env: MakeEnv, clock: FakeClock) -> None:
    """Config documents it: every worker needs the same secret_key, or a retry is reuse."""
    store = MemoryStore(clock=clock, warn=False)
    worker_a = await make_env(refresh_grace=30, store=store, secret_key=b"a" * 32)
    worker_b = await make_env(refresh_grace=30, store=store, secret_key=b"b" * 32)
    worker_c = await make_env(refresh_grace=30, store=store, secret_key=b"a" * 32)
    rt0 = await worker_a.seed()
    rt1 = (await ok(worker_a, rt0))["refresh_token"]
    assert (await ok(worker_c, rt0))["refresh_token"] == rt1
    await denied(worker_b, rt0, "invalid_grant")
    [reuse] = worker_b.hooks.named(REFRESH_REUSE_DETECTED)
    assert reuse.data["reason"] == "no sealed successor to return"
    await denied(worker_a, rt1, "invalid_grant")


async def test_a_sealed_successor_moved_to_another_record_does_not_open(make_env: MakeEnv) -> None:
    env = await make_env(refresh_grace=30)
    store = env.config.backend
    assert isinstance(store, MemoryStore)
    victim = await env.seed()
    attacker = await env.seed()
    await ok(env, victim)
    await ok(env, attacker)
    victim_record = await record_of(env.config, victim)
    attacker_record = await record_of(env.config, attacker)
    assert victim_record is not None
    assert attacker_record is not None
    # Someone with write access to the store grafts the victim's sealed successor onto their record.
    forged = msgspec.structs.replace(attacker_record, sealed_successor=victim_record.sealed_successor)
    store._refresh[(forged.family_id, forged.token_hash)] = forged
    await denied(env, attacker, "invalid_grant")


@pytest.mark.parametrize("grace", [MAX_REFRESH_GRACE + 1, -1])
def test_grace_window_is_capped(make_config: Callable[..., Config], grace: int) -> None:
    assert MAX_REFRESH_GRACE == 300
    with pytest.raises(ValueError, match="refresh_grace"):
        make_config(refresh_grace=grace)


def test_grace_window_defaults_to_strict(make_config: Callable[..., Config]) -> None:
    assert make_config().refresh_grace == 0
    assert make_config(refresh_grace=MAX_REFRESH_GRACE).refresh_grace == MAX_REFRESH_GRACE


# ----------------------------------------------------------------- ID token on refresh


async def test_id_token_on_refresh_follows_oidc_core_12_2(make_env: MakeEnv, clock: FakeClock) -> None:
    env = await make_env(id_token_on_refresh=True)
    rt0 = await env.seed(auth_time=1_700_000_000, acr="urn:mfa", amr=("pwd",), sid="s-1")
    clock.advance(100)
    body = await ok(env, rt0)
    claims = verified(env.config, body["id_token"], "JWT")
    assert claims["iss"] == env.config.issuer
    assert claims["sub"] == "alice"
    assert claims["aud"] == "app"
    assert claims["azp"] == "app"
    assert claims["iat"] == int(clock.now)
    assert claims["auth_time"] == 1_700_000_000
    assert claims["acr"] == "urn:mfa"
    assert claims["amr"] == ["pwd"]
    assert claims["sid"] == "s-1"
    assert "nonce" not in claims
    assert claims["at_hash"] == half_hash(body["access_token"], env.config.keys.active_alg)
    # Same family as the refresh token, so a family revocation reaches this ID token too.
    assert claims["fid"] == body["refresh_token"].split(".")[0] == rt0.split(".")[0]


async def test_no_id_token_without_openid_or_with_the_flag_off(make_env: MakeEnv) -> None:
    on = await make_env(id_token_on_refresh=True)
    body = await ok(on, await on.seed(scope=("offline_access", "read")))
    assert "id_token" not in body
    body = await ok(on, await on.seed(scope=("openid", "read")), scope="read")
    assert "id_token" not in body
    off = await make_env()
    assert "id_token" not in await ok(off, await off.seed())


async def test_grace_retry_gets_a_fresh_id_token(make_env: MakeEnv, clock: FakeClock) -> None:
    env = await make_env(id_token_on_refresh=True, refresh_grace=30)
    rt0 = await env.seed()
    first = await ok(env, rt0)
    clock.advance(5)
    retry = await ok(env, rt0)
    claims = verified(env.config, retry["id_token"], "JWT")
    assert claims["at_hash"] == half_hash(retry["access_token"], env.config.keys.active_alg)
    assert claims["iat"] == jwt_claims(first["id_token"])["iat"] + 5


# ----------------------------------------------------------------- with the authorization_code grant


async def test_a_family_started_by_the_authorization_code_grant(make_env: MakeEnv, clock: FakeClock) -> None:
    """The first refresh token comes from the real code grant; refreshing keeps the original
    authentication (OIDC Core §12.2) and a replayed code still kills the refreshed family."""
    env = await make_env(clients=standard_clients() + family_clients(), id_token_on_refresh=True)
    first, code_form = await code_grant(env.http, env.config, "openid offline_access read", nonce="n-1", acr="urn:mfa")
    original = verified(env.config, first["id_token"], "JWT")
    assert original["nonce"] == "n-1"
    clock.advance(60)
    refreshed = await ok(env, first["refresh_token"], client_id="web", scope="openid read")
    assert refreshed["scope"] == "openid read"
    id_token = verified(env.config, refreshed["id_token"], "JWT")
    for claim in ("iss", "sub", "aud", "azp", "auth_time", "acr"):
        assert id_token[claim] == original[claim], claim
    assert id_token["iat"] == original["iat"] + 60
    assert "nonce" not in id_token
    at = verified(env.config, refreshed["access_token"], "at+jwt")
    assert at["auth_time"] == original["auth_time"]
    assert at["acr"] == "urn:mfa"
    # The code presented again (RFC 6749 §4.1.2): the whole family goes, refreshed tokens included.
    replay = await env.http.post("/oauth/token", data=code_form, auth=("web", CREDENTIALS["web"]))
    assert replay.json()["error"] == "invalid_grant"
    await denied(env, refreshed["refresh_token"], "invalid_grant", client_id="web")
    assert await access_token_revoked(env.config.backend, refreshed["access_token"])


# ----------------------------------------------------------------- discovery


async def test_discovery_lists_the_grant(env: Env) -> None:
    doc = (await env.http.get("/.well-known/openid-configuration")).json()
    assert "refresh_token" in doc["grant_types_supported"]


async def test_reuse_by_another_client_revokes_for_the_owners_token_lifetimes(
    make_env: MakeEnv, clock: FakeClock
) -> None:
    # The family's tokens were minted for their owner: its 2-hour access tokens must read as
    # revoked for 2 hours, whoever presents the rotated token (here a client whose own
    # access tokens live 15 minutes).
    long_lived = msgspec.structs.replace(REFRESH_CLIENTS[0], access_token_ttl=7200, refresh_family_ttl=3600)
    env = await make_env(clients=(long_lived, *REFRESH_CLIENTS[1:]))
    rt0 = await env.seed(client_id="app")
    await ok(env, rt0)
    await denied(env, rt0, "invalid_grant", client_id="other")
    families = cast(MemoryStore, env.config.backend)._families
    assert families[family_of(rt0)] >= clock.now + 7200


async def test_reuse_revokes_the_family_even_when_loading_its_owner_fails(make_env: MakeEnv, clock: FakeClock) -> None:
    # LESSONS: reuse detection always revokes; the owner is loaded only to size the
    # revocation, and a host's client store failing at that moment must not stop it.
    class FailingOwner(LoadFails, RecordingHooks):
        pass

    hooks = FailingOwner()
    env = await make_env(hooks=hooks)
    rt0 = await env.seed(client_id="app")
    rt1 = (await ok(env, rt0))["refresh_token"]
    hooks.down = frozenset({"app"})
    await denied(env, rt0, "invalid_grant", client_id="other")
    hooks.down = frozenset()
    await denied(env, rt1, "invalid_grant")  # the family is revoked
    assert len(hooks.named(FAMILY_REVOKED)) == 1

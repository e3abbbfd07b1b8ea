"""The authorization_code grant through HTTP (RFC 6749 §4.1.3, RFC 7636 §4.6, RFC 9700 §4.13)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx
import msgspec
import pytest

from attesto_asgi import (
    AttestoMiddleware,
    Client,
    Config,
    Hooks,
    InvalidToken,
    MemoryStore,
    issue_code,
    verify_access_token,
)
from attesto_asgi._secrets import token_hash
from attesto_asgi.core.codes import CODE_REUSE_MARGIN
from attesto_asgi.core.refresh import split_refresh_token
from attesto_asgi.model import CodeReused
from tests.core.grants.authcode_helpers import (
    API,
    BILLING,
    LEGACY_SECRET,
    RFC7636_CHALLENGE,
    RFC7636_VERIFIER,
    SPA_REDIRECT,
    WEB_REDIRECT,
    WEB_SECRET,
    RecordingHooks,
    auth_time,
    authcode_clients,
    names,
    pkce_pair,
    redeem,
    spa_code,
)
from tests.helpers import FakeClock, LoadFails, access_token_revoked, http_client, jwt_claims, not_found_app


@pytest.fixture
def hooks() -> RecordingHooks:
    return RecordingHooks()


@pytest.fixture
def config(make_config: Callable[..., Config], hooks: RecordingHooks) -> Config:
    return make_config(clients=authcode_clients(), hooks=hooks)


@pytest.fixture
def store(config: Config) -> MemoryStore:
    backend = config.backend
    assert isinstance(backend, MemoryStore)
    return backend


def assert_denied(r: httpx.Response, error: str, hooks: RecordingHooks, reason: str | None = None) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"] == error
    assert "access_token" not in r.json()
    assert r.headers["cache-control"] == "no-store"
    denial = hooks.events[-1]
    assert denial.name == "token_denied"
    assert denial.data["error"] == error
    assert denial.data["reason"]
    if reason is not None:
        assert reason in denial.data["reason"]


# ------------------------------------------------------------------ success


async def test_rfc7636_appendix_b_vector_redeems(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, hooks: RecordingHooks, store: MemoryStore
) -> None:
    code = await spa_code(config, clock, challenge=RFC7636_CHALLENGE, nonce="n-0S6_WzA2Mj", acr="urn:mace:silver")
    r = await redeem(client, code, verifier=RFC7636_VERIFIER)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "openid offline_access"
    assert {"access_token", "refresh_token", "id_token"} <= body.keys()
    at = jwt_claims(body["access_token"])
    assert at["sub"] == "alice"
    assert at["client_id"] == at["aud"] == "spa"
    assert at["auth_time"] == auth_time(clock)
    assert at["acr"] == "urn:mace:silver"
    assert at["scope"] == "openid offline_access"
    # The access token carries the code's family (fid), which is live.
    split = split_refresh_token(body["refresh_token"])
    assert split is not None
    family_id, refresh_hash = split
    assert at["fid"] == family_id
    assert not await access_token_revoked(store, body["access_token"])
    assert not await store.family_revoked(family_id)
    # Events: token_issued then refresh_issued; no secret in either.
    assert names(hooks.events) == ["token_issued", "refresh_issued"]
    issued = hooks.events[0]
    assert issued.subject == "alice"
    assert issued.client_id == "spa"
    assert issued.grant_type == "authorization_code"
    assert issued.data["jti"] == at["jti"]
    assert issued.data["family_id"] == family_id
    dumped = msgspec.json.encode(hooks.events).decode()
    for secret in (code, RFC7636_VERIFIER, body["access_token"], body["refresh_token"], body["id_token"]):
        assert secret not in dumped
    assert refresh_hash not in dumped


async def test_first_refresh_token_joins_the_code_family(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, store: MemoryStore
) -> None:
    code = await spa_code(config, clock, amr=("pwd", "otp"), sid="session-1")
    started = clock.now
    clock.advance(20)
    r = await redeem(client, code)
    assert r.status_code == 200, r.text
    split = split_refresh_token(r.json()["refresh_token"])
    assert split is not None
    record = await store.get_refresh(*split)
    assert record is not None
    assert record.client_id == "spa"
    assert record.subject == "alice"
    assert record.generation == 0
    assert record.scope == ("openid", "offline_access")
    # The family's absolute lifetime counts from the original authorization (the code).
    assert record.family_expires_at == started + config.refresh_family_ttl
    assert record.expires_at == clock.now + config.refresh_token_ttl
    assert (record.auth_time, record.amr, record.sid) == (auth_time_of(started), ("pwd", "otp"), "session-1")


def auth_time_of(issued_at: float) -> int:
    return int(issued_at) - 30


async def test_confidential_client_with_basic_auth(config: Config, clock: FakeClock, client: httpx.AsyncClient) -> None:
    verifier, challenge = pkce_pair()
    code = await issue_code(
        config,
        client_id="web",
        redirect_uri=WEB_REDIRECT,
        subject="bob",
        scope="openid email",
        code_challenge=challenge,
        auth_time=auth_time(clock),
    )
    r = await redeem(client, code, verifier=verifier, redirect_uri=WEB_REDIRECT, auth=("web", WEB_SECRET))
    assert r.status_code == 200, r.text
    assert jwt_claims(r.json()["access_token"])["sub"] == "bob"
    # OIDC Core §11: no offline_access, so no refresh token for an OIDC request.
    assert "refresh_token" not in r.json()


async def test_confidential_client_without_pkce_when_registered_so(
    config: Config, clock: FakeClock, client: httpx.AsyncClient
) -> None:
    code = await issue_code(
        config,
        client_id="legacy",
        redirect_uri=WEB_REDIRECT,
        subject="carol",
        scope="read",
        code_challenge=None,
        auth_time=auth_time(clock),
    )
    r = await redeem(client, code, verifier=None, redirect_uri=WEB_REDIRECT, auth=("legacy", LEGACY_SECRET))
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "read"


@pytest.mark.parametrize("length", [43, 128])
async def test_verifier_length_bounds_accepted(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, length: int
) -> None:
    import base64
    import hashlib

    verifier = ("aZ09-._~" * 20)[:length]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    code = await spa_code(config, clock, challenge=challenge)
    r = await redeem(client, code, verifier=verifier)
    assert r.status_code == 200, r.text


async def test_code_just_before_expiry_redeems(config: Config, clock: FakeClock, client: httpx.AsyncClient) -> None:
    code = await spa_code(config, clock)
    clock.advance(config.code_ttl - 1)
    assert (await redeem(client, code)).status_code == 200


# ------------------------------------------------------------------ request errors


async def test_code_missing_is_invalid_request(client: httpx.AsyncClient, hooks: RecordingHooks) -> None:
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "client_id": "spa", "redirect_uri": SPA_REDIRECT},
    )
    assert_denied(r, "invalid_request", hooks, "code missing")


async def test_redirect_uri_missing_is_invalid_request_and_leaves_the_code(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, hooks: RecordingHooks
) -> None:
    code = await spa_code(config, clock)
    r = await redeem(client, code, redirect_uri=None)
    assert_denied(r, "invalid_request", hooks, "redirect_uri missing")
    # A malformed request is refused before the code is taken.
    assert (await redeem(client, code)).status_code == 200


async def test_client_without_the_grant_is_unauthorized(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, hooks: RecordingHooks
) -> None:
    code = await spa_code(config, clock)
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": SPA_REDIRECT},
        auth=("svc", "svc-secret-0123456789abcdefghijklmnopqrstuvwxyz"),
    )
    assert_denied(r, "unauthorized_client", hooks)


# ------------------------------------------------------------------ invalid_grant


async def test_unknown_code(client: httpx.AsyncClient, hooks: RecordingHooks) -> None:
    r = await redeem(client, "x" * 43)
    assert_denied(r, "invalid_grant", hooks, "unknown or expired")


async def test_expired_code(config: Config, clock: FakeClock, client: httpx.AsyncClient, hooks: RecordingHooks) -> None:
    code = await spa_code(config, clock)
    clock.advance(config.code_ttl)
    r = await redeem(client, code)
    assert_denied(r, "invalid_grant", hooks)
    # An expired code that issued nothing is not "reuse": no family revocation events.
    assert "code_reuse_detected" not in names(hooks.events)


async def test_code_issued_to_another_client(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, hooks: RecordingHooks
) -> None:
    code = await spa_code(config, clock, client_id="spa")
    r = await redeem(client, code, client_id="spa2")
    assert_denied(r, "invalid_grant", hooks, "another client")
    # The failed redemption spent the code: its rightful client cannot redeem it now.
    r = await redeem(client, code, client_id="spa")
    assert_denied(r, "invalid_grant", hooks, "presented again")


@pytest.mark.parametrize(
    "presented",
    [
        "http://localhost:3000/cb/",
        "http://LOCALHOST:3000/cb",
        "http://localhost:3000/CB",
        "http://localhost:3000/cb?x=1",
        "http://localhost:3000/cb#",
        "http://localhost:3000/%63b",
        "http://localhost:3000/cb ",
        "http://localhost:3001/cb",
    ],
)
async def test_redirect_uri_must_be_identical(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, hooks: RecordingHooks, presented: str
) -> None:
    code = await spa_code(config, clock)
    r = await redeem(client, code, redirect_uri=presented)
    assert_denied(r, "invalid_grant", hooks, "redirect_uri differs")


async def test_redirect_uri_of_the_same_client_but_another_registration(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, hooks: RecordingHooks
) -> None:
    verifier, challenge = pkce_pair()
    code = await issue_code(
        config,
        client_id="web",
        redirect_uri=WEB_REDIRECT,
        subject="bob",
        scope="read",
        code_challenge=challenge,
        auth_time=auth_time(clock),
    )
    r = await redeem(
        client, code, verifier=verifier, redirect_uri="https://app.example.com/other", auth=("web", WEB_SECRET)
    )
    assert_denied(r, "invalid_grant", hooks, "redirect_uri differs")


@pytest.mark.parametrize(
    ("verifier", "reason"),
    [
        (None, "code_verifier missing"),
        ("A" * 43, "does not match"),
        (RFC7636_VERIFIER[:-1] + "l", "does not match"),
        (RFC7636_VERIFIER[:42], "malformed"),  # 42 characters: too short
        (RFC7636_VERIFIER + "a" * 86, "malformed"),  # 129 characters: too long
        (RFC7636_VERIFIER[:-1] + "+", "malformed"),  # '+' is not unreserved
        (RFC7636_VERIFIER[:-1] + "=", "malformed"),
        (RFC7636_VERIFIER[:-1] + "é", "malformed"),
    ],
)
async def test_pkce_failures(
    config: Config,
    clock: FakeClock,
    client: httpx.AsyncClient,
    hooks: RecordingHooks,
    verifier: str | None,
    reason: str,
) -> None:
    code = await spa_code(config, clock)
    r = await redeem(client, code, verifier=verifier)
    assert_denied(r, "invalid_grant", hooks, reason)
    # Spent: the right verifier no longer helps.
    r = await redeem(client, code, verifier=RFC7636_VERIFIER)
    assert_denied(r, "invalid_grant", hooks, "presented again")


async def test_verifier_for_a_code_without_challenge_is_a_downgrade(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, hooks: RecordingHooks
) -> None:
    code = await issue_code(
        config,
        client_id="legacy",
        redirect_uri=WEB_REDIRECT,
        subject="carol",
        scope="read",
        code_challenge=None,
        auth_time=auth_time(clock),
    )
    r = await redeem(client, code, verifier=RFC7636_VERIFIER, redirect_uri=WEB_REDIRECT, auth=("legacy", LEGACY_SECRET))
    assert_denied(r, "invalid_grant", hooks, "without code_challenge")


async def test_code_without_pkce_refused_once_the_client_requires_it(
    config: Config, make_config: Callable[..., Config], clock: FakeClock, hooks: RecordingHooks
) -> None:
    code = await issue_code(
        config,
        client_id="legacy",
        redirect_uri=WEB_REDIRECT,
        subject="carol",
        scope="read",
        code_challenge=None,
        auth_time=auth_time(clock),
    )
    # The registration changes (require_pkce back on) before the code is redeemed.
    clients = tuple(
        msgspec.structs.replace(c, require_pkce=True) if c.client_id == "legacy" else c for c in authcode_clients()
    )
    stricter = make_config(clients=clients, store=config.backend, hooks=hooks)
    async with http_client(AttestoMiddleware(not_found_app, stricter)) as http:
        r = await redeem(http, code, verifier=None, redirect_uri=WEB_REDIRECT, auth=("legacy", LEGACY_SECRET))
    assert_denied(r, "invalid_grant", hooks, "requires it")


class InactiveUser(RecordingHooks):
    async def subject_active(self, subject: str) -> bool:
        return subject != "alice"


async def test_subject_disabled_between_authorization_and_redemption(
    make_config: Callable[..., Config], clock: FakeClock
) -> None:
    hooks = InactiveUser()
    config = make_config(clients=authcode_clients(), hooks=hooks)
    code = await spa_code(config, clock)
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        r = await redeem(http, code)
        assert_denied(r, "invalid_grant", hooks, "subject no longer active")


# ------------------------------------------------------------------ reuse


async def test_second_redemption_revokes_the_family(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, hooks: RecordingHooks, store: MemoryStore
) -> None:
    code = await spa_code(config, clock)
    first = await redeem(client, code)
    assert first.status_code == 200
    access = first.json()["access_token"]
    split = split_refresh_token(first.json()["refresh_token"])
    assert split is not None
    family_id = split[0]
    assert await store.get_refresh(*split) is not None
    hooks.events.clear()

    clock.advance(5)
    again = await redeem(client, code)
    assert_denied(again, "invalid_grant", hooks, "presented again")
    assert names(hooks.events) == ["code_reuse_detected", "family_revoked", "token_denied"]
    reuse, revoked, _ = hooks.events
    assert reuse.data == {"family_id": family_id, "issued_to": "spa"}
    assert revoked.data == {"family_id": family_id, "reason": "code_reuse"}
    # Every token from the first redemption is dead.
    assert await store.family_revoked(family_id)
    assert await store.get_refresh(*split) is None
    assert await access_token_revoked(store, access)

    # A third presentation is reported again; the family was already revoked.
    hooks.events.clear()
    third = await redeem(client, code)
    assert_denied(third, "invalid_grant", hooks)
    assert names(hooks.events) == ["code_reuse_detected", "token_denied"]

    # The family stays revoked for its whole life.
    clock.advance(config.refresh_family_ttl - 10)
    assert await store.family_revoked(family_id)


async def test_reuse_by_another_client_revokes_too(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, hooks: RecordingHooks, store: MemoryStore
) -> None:
    code = await spa_code(config, clock)
    first = await redeem(client, code)
    stolen = await redeem(client, code, client_id="spa2")
    assert_denied(stolen, "invalid_grant", hooks)
    assert await access_token_revoked(store, first.json()["access_token"])
    reuse = next(e for e in hooks.events if e.name == "code_reuse_detected")
    assert reuse.client_id == "spa2"
    assert reuse.data["issued_to"] == "spa"


async def test_reuse_revokes_even_when_loading_the_codes_client_fails(
    make_config: Callable[..., Config], clock: FakeClock
) -> None:
    # RFC 6749 §4.1.2: a code used twice SHOULD revoke what it issued. The code's client is
    # loaded only to size the revocation; a host's client store failing then must not stop it.
    class FailingOwner(LoadFails, RecordingHooks):
        pass

    hooks = FailingOwner()
    config = make_config(clients=authcode_clients(), hooks=hooks)
    store = config.backend
    async with http_client(AttestoMiddleware(not_found_app, config)) as client:
        code = await spa_code(config, clock)
        first = await redeem(client, code)
        hooks.down = frozenset({"spa"})
        stolen = await redeem(client, code, client_id="spa2")
    assert_denied(stolen, "invalid_grant", hooks, "presented again")
    assert names(hooks.events)[-3:] == ["code_reuse_detected", "family_revoked", "token_denied"]
    assert await access_token_revoked(store, first.json()["access_token"])


async def test_reuse_detected_after_expiry_within_the_margin(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, hooks: RecordingHooks, store: MemoryStore
) -> None:
    code = await spa_code(config, clock)
    access = (await redeem(client, code)).json()["access_token"]
    clock.advance(config.code_ttl + CODE_REUSE_MARGIN - 1)
    r = await redeem(client, code)
    assert_denied(r, "invalid_grant", hooks, "presented again")
    assert await access_token_revoked(store, access)
    assert "family_revoked" in names(hooks.events)


async def test_no_reuse_detection_after_the_margin(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, hooks: RecordingHooks
) -> None:
    code = await spa_code(config, clock)
    assert (await redeem(client, code)).status_code == 200
    clock.advance(config.code_ttl + CODE_REUSE_MARGIN)
    hooks.events.clear()
    r = await redeem(client, code)
    assert_denied(r, "invalid_grant", hooks, "unknown or expired")
    assert names(hooks.events) == ["token_denied"]


# ------------------------------------------------------------------ refresh issuance


@pytest.mark.parametrize(
    ("client_id", "scope", "expect_refresh"),
    [
        ("spa", "openid offline_access", True),  # OIDC Core §11: offline_access granted
        ("spa", "openid profile", False),  # OIDC without offline_access
        ("oauth-app", "read", True),  # not OIDC, client has the refresh_token grant
        ("norefresh", "openid offline_access", False),  # client lacks the refresh_token grant
    ],
)
async def test_first_refresh_token_policy(
    config: Config,
    clock: FakeClock,
    client: httpx.AsyncClient,
    hooks: RecordingHooks,
    client_id: str,
    scope: str,
    expect_refresh: bool,
) -> None:
    code = await spa_code(config, clock, client_id=client_id, scope=scope)
    r = await redeem(client, code, client_id=client_id)
    assert r.status_code == 200, r.text
    assert ("refresh_token" in r.json()) is expect_refresh
    assert names(hooks.events) == (["token_issued", "refresh_issued"] if expect_refresh else ["token_issued"])


class NoRefresh(RecordingHooks):
    async def issue_refresh_token(self, client: Client, scope: tuple[str, ...]) -> bool:
        return False


async def test_hook_may_refuse_the_refresh_token(make_config: Callable[..., Config], clock: FakeClock) -> None:
    config = make_config(clients=authcode_clients(), hooks=NoRefresh())
    code = await spa_code(config, clock)
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        r = await redeem(http, code)
    assert r.status_code == 200
    assert "refresh_token" not in r.json()


# ------------------------------------------------------------------ family revoked mid-flight


class ReuseMidFlight(RecordingHooks):
    """While the first redemption is in flight, the same code is presented again (an
    attacker racing the client), which revokes the family under the first request."""

    def __init__(self) -> None:
        super().__init__()
        self.http: httpx.AsyncClient | None = None
        self.code = ""
        self.racing: httpx.Response | None = None

    async def race(self) -> None:
        if self.racing is None and self.http is not None:
            self.racing = await redeem(self.http, self.code)


class ReuseBeforeRefresh(ReuseMidFlight):
    async def issue_refresh_token(self, client: Client, scope: tuple[str, ...]) -> bool:
        await self.race()
        return await super().issue_refresh_token(client, scope)


class ReuseDuringIdToken(ReuseMidFlight):
    async def id_token_claims(
        self, client: Client, subject: str, scope: tuple[str, ...], requested_claims: Mapping[str, Any] | None
    ) -> Mapping[str, Any]:
        await self.race()
        return {}


async def test_family_revoked_before_the_refresh_token_fails_the_request(
    make_config: Callable[..., Config], clock: FakeClock
) -> None:
    hooks = ReuseBeforeRefresh()
    config = make_config(clients=authcode_clients(), hooks=hooks)
    store = config.backend
    hooks.code = await spa_code(config, clock, scope="openid offline_access")
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        hooks.http = http
        r = await redeem(http, hooks.code)
    assert hooks.racing is not None
    assert hooks.racing.json()["error"] == "invalid_grant"
    # put_refresh is refused for the revoked family: the first request fails as a whole.
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"  # RFC 6749 §5.2: the grant is revoked
    denial = hooks.events[-1]
    assert denial.name == "token_denied"
    assert "family was revoked during the request" in denial.data["reason"]
    assert "token_issued" not in names(hooks.events)
    reuse = next(e for e in hooks.events if e.name == "code_reuse_detected")
    assert await store.family_revoked(reuse.data["family_id"])


async def test_family_revoked_mid_flight_without_a_refresh_token_leaves_nothing_live(
    make_config: Callable[..., Config], clock: FakeClock
) -> None:
    """No refresh token, so no store write ends the redemption: the tokens it returns carry
    the family (fid), which the replay revoked, so they are dead on arrival."""
    hooks = ReuseDuringIdToken()
    config = make_config(clients=authcode_clients(), hooks=hooks)
    store = config.backend
    hooks.code = await spa_code(config, clock, scope="openid")
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        hooks.http = http
        r = await redeem(http, hooks.code)
    assert hooks.racing is not None
    assert hooks.racing.json()["error"] == "invalid_grant"
    assert r.status_code == 200, r.text
    body = r.json()
    assert "refresh_token" not in body
    reuse = next(e for e in hooks.events if e.name == "code_reuse_detected")
    family_id = reuse.data["family_id"]
    assert await store.family_revoked(family_id)
    assert jwt_claims(body["access_token"])["fid"] == jwt_claims(body["id_token"])["fid"] == family_id
    # The resource server's check (RFC 9068 §4 with the store) refuses the access token.
    with pytest.raises(InvalidToken, match="revoked"):
        await verify_access_token(config, body["access_token"], audience="spa", store=store)


# ------------------------------------------------------------------ resources (RFC 8707)


async def web_code(config: Config, clock: FakeClock, resource: tuple[str, ...]) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    code = await issue_code(
        config,
        client_id="web",
        redirect_uri=WEB_REDIRECT,
        subject="bob",
        scope="read",
        code_challenge=challenge,
        auth_time=auth_time(clock),
        resource=resource,
    )
    return code, verifier


async def test_audience_is_the_code_resources(config: Config, clock: FakeClock, client: httpx.AsyncClient) -> None:
    code, verifier = await web_code(config, clock, (API, BILLING))
    r = await redeem(client, code, verifier=verifier, redirect_uri=WEB_REDIRECT, auth=("web", WEB_SECRET))
    assert jwt_claims(r.json()["access_token"])["aud"] == [API, BILLING]


async def test_resource_narrows_the_audience(config: Config, clock: FakeClock, client: httpx.AsyncClient) -> None:
    code, verifier = await web_code(config, clock, (API, BILLING))
    r = await redeem(
        client, code, verifier=verifier, redirect_uri=WEB_REDIRECT, auth=("web", WEB_SECRET), resource=BILLING
    )
    assert r.status_code == 200, r.text
    assert jwt_claims(r.json()["access_token"])["aud"] == BILLING


async def test_resource_outside_the_code_is_invalid_target(
    config: Config, clock: FakeClock, client: httpx.AsyncClient, hooks: RecordingHooks
) -> None:
    code, verifier = await web_code(config, clock, (API,))
    r = await redeem(
        client,
        code,
        verifier=verifier,
        redirect_uri=WEB_REDIRECT,
        auth=("web", WEB_SECRET),
        resource="https://reports.example.com",
    )
    assert_denied(r, "invalid_target", hooks, "not granted by the code")


async def test_default_hooks_subclass_is_usable(make_config: Callable[..., Config], clock: FakeClock) -> None:
    """The plain Hooks() default works end to end (no recording subclass)."""
    config = make_config(clients=authcode_clients(), hooks=Hooks())
    code = await spa_code(config, clock)
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        assert (await redeem(http, code)).status_code == 200
    # The store kept a tombstone, not the code: a later take reports the reuse.
    assert isinstance(await config.backend.take_code(token_hash(code)), CodeReused)

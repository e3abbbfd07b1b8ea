"""RFC 7009 token revocation through HTTP, observed through RFC 7662 introspection."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from attesto_asgi import (
    AttestoMiddleware,
    Client,
    Config,
    KeySet,
    MemoryStore,
    StoreUnavailable,
)
from attesto_asgi.core.refresh import split_refresh_token
from tests.families import CREDENTIALS, Family, FamilyHooks, code_grant, family_clients, rotate, start_family
from tests.helpers import FakeClock, http_client, not_found_app

REVOKE = "/oauth/revoke"
INTROSPECT = "/oauth/introspect"


async def revoke(http: httpx.AsyncClient, token: str, client_id: str = "web", **form: str) -> httpx.Response:
    return await http.post(REVOKE, data={"token": token, **form}, auth=(client_id, CREDENTIALS[client_id]))


async def active(http: httpx.AsyncClient, token: str, client_id: str = "rs") -> bool:
    r = await http.post(INTROSPECT, data={"token": token}, auth=(client_id, CREDENTIALS[client_id]))
    assert r.status_code == 200, r.text
    value: bool = r.json()["active"]
    return value


async def states(http: httpx.AsyncClient, *fams: Family) -> list[bool]:
    """Every token of the families: access tokens as the resource server sees them, refresh
    tokens as their own client sees them."""
    out = []
    for fam in fams:
        out += [await active(http, fam.access_token), await active(http, fam.refresh_token, "web")]
    return out


def assert_empty_200(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    assert r.content == b""
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"


# ------------------------------------------------------------------ revoking a refresh token


async def test_revoking_a_refresh_token_revokes_its_whole_family(http: httpx.AsyncClient, cfg: Config) -> None:
    first = await start_family(cfg)
    second = await rotate(cfg, first)  # the family now has two access tokens and a rotated refresh token
    other = await start_family(cfg)
    assert await states(http, second) == [True, True]
    assert await active(http, first.access_token)
    assert not await active(http, first.refresh_token, "web")  # rotated: no longer usable

    assert_empty_200(await revoke(http, second.refresh_token, token_type_hint="refresh_token"))

    assert await states(http, first, second) == [False, False, False, False]
    assert await states(http, other) == [True, True]  # another authorization of the same user and client
    split = split_refresh_token(second.refresh_token)
    assert split is not None
    assert await cfg.backend.get_refresh(*split) is None


async def test_revoking_with_an_already_rotated_refresh_token_also_revokes_the_family(
    http: httpx.AsyncClient, cfg: Config
) -> None:
    first = await start_family(cfg)
    second = await rotate(cfg, first)
    assert_empty_200(await revoke(http, first.refresh_token))
    assert await states(http, second) == [False, False]


async def test_revocation_event_names_the_family_never_the_token(
    http: httpx.AsyncClient, cfg: Config, hooks: FamilyHooks
) -> None:
    fam = await start_family(cfg)
    await revoke(http, fam.refresh_token)
    await revoke(http, fam.refresh_token)  # already revoked: answered the same, nothing more to record
    (event,) = hooks.named("token_revoked")
    assert event.client_id == "web"
    assert event.subject == "alice"
    assert event.scope == ("read", "write")
    assert event.data == {"token_type": "refresh_token", "family_id": fam.family_id, "family_newly_revoked": True}
    for e in hooks.events:
        assert fam.refresh_token not in repr(e)
        assert fam.refresh_token.split(".")[1] not in repr(e)


async def test_the_family_stays_revoked_until_its_last_access_token_expired(
    make_config: Callable[..., Config], clock: FakeClock
) -> None:
    # An access token minted near the family's end of life outlives the family itself.
    config = make_config(clients=family_clients(), refresh_family_ttl=1000, refresh_token_ttl=990)
    first = await start_family(config)
    clock.advance(950)
    last = await rotate(config, first)
    assert last.access_claims["exp"] > clock.now + 800
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        assert_empty_200(await revoke(http, last.refresh_token))
        clock.advance(150)  # past the family's end of life, before the access token's expiry
        assert not await active(http, last.access_token)


async def test_a_public_client_revokes_its_own_refresh_token_with_its_client_id(
    http: httpx.AsyncClient, cfg: Config
) -> None:
    fam = await start_family(cfg, "spa", scope=("openid", "offline_access"), audience=("spa",))
    assert await active(http, fam.access_token)
    r = await http.post(REVOKE, data={"token": fam.refresh_token, "client_id": "spa"})
    assert_empty_200(r)
    assert not await active(http, fam.access_token)


# ------------------------------------------------------------------ revoking an access token


async def test_revoking_an_access_token_revokes_that_token_only(
    http: httpx.AsyncClient, cfg: Config, hooks: FamilyHooks
) -> None:
    first = await start_family(cfg)
    second = await rotate(cfg, first)
    assert_empty_200(await revoke(http, first.access_token, token_type_hint="access_token"))
    assert not await active(http, first.access_token)
    assert await states(http, second) == [True, True]
    (event,) = hooks.named("token_revoked")
    assert event.data == {"token_type": "access_token", "jti": first.access_claims["jti"]}
    assert first.access_token not in repr(event)


async def test_a_client_credentials_token_can_be_revoked(http: httpx.AsyncClient) -> None:
    r = await http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("svc", CREDENTIALS["svc"]))
    token = r.json()["access_token"]
    assert await active(http, token)
    assert_empty_200(await revoke(http, token, "svc"))
    assert not await active(http, token)


async def test_the_hint_is_only_a_hint(http: httpx.AsyncClient, cfg: Config) -> None:
    a, b = await start_family(cfg), await start_family(cfg)
    # RFC 7009 §2.1: a wrong or unknown hint still finds the token.
    assert_empty_200(await revoke(http, a.access_token, token_type_hint="refresh_token"))
    assert_empty_200(await revoke(http, b.refresh_token, token_type_hint="saml2"))
    assert not await active(http, a.access_token)
    assert await states(http, b) == [False, False]


# ------------------------------------------------------------------ what must change nothing


async def test_revocation_by_another_client_leaves_the_tokens_active(
    http: httpx.AsyncClient, cfg: Config, hooks: FamilyHooks
) -> None:
    fam = await start_family(cfg)
    for token in (fam.refresh_token, fam.access_token):
        for client_id in ("svc", "rs"):
            assert_empty_200(await revoke(http, token, client_id))
    assert await states(http, fam) == [True, True]
    assert hooks.named("token_revoked") == []


@pytest.mark.parametrize(
    "token",
    [
        "unknown",
        "A" * 22 + "." + "B" * 43,  # refresh-shaped, never issued
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "x.y.z",
        "é" * 50,
        "%" * 10,
        "a" * 60000,
    ],
)
async def test_unknown_and_malformed_tokens_get_200(http: httpx.AsyncClient, token: str, hooks: FamilyHooks) -> None:
    assert_empty_200(await revoke(http, token))
    assert hooks.named("token_revoked") == []


async def test_tokens_of_another_issuer_and_expired_tokens_get_200_and_change_nothing(
    http: httpx.AsyncClient, cfg: Config, make_config: Callable[..., Config], clock: FakeClock, hooks: FamilyHooks
) -> None:
    foreign_cfg = make_config(keys=KeySet.generate("ES256"), clients=cfg.clients)
    foreign = await start_family(foreign_cfg)
    assert_empty_200(await revoke(http, foreign.access_token))
    fam = await start_family(cfg)
    clock.advance(cfg.access_token_ttl)
    assert_empty_200(await revoke(http, fam.access_token))
    assert hooks.named("token_revoked") == []
    assert await active(http, fam.refresh_token, "web")


async def test_token_is_required(http: httpx.AsyncClient) -> None:
    r = await http.post(REVOKE, data={"token_type_hint": "access_token"}, auth=("web", CREDENTIALS["web"]))
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    assert r.headers["cache-control"] == "no-store"


async def test_client_authentication_is_the_token_endpoints(http: httpx.AsyncClient, cfg: Config) -> None:
    fam = await start_family(cfg)
    wrong = await http.post(REVOKE, data={"token": fam.refresh_token}, auth=("web", "wrong"))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    anonymous = await http.post(REVOKE, data={"token": fam.refresh_token})
    assert anonymous.json()["error"] == "invalid_client"
    two_methods = await http.post(
        REVOKE, data={"token": fam.refresh_token, "client_secret": "x"}, auth=("web", CREDENTIALS["web"])
    )
    assert two_methods.json()["error"] == "invalid_request"
    assert await states(http, fam) == [True, True]


async def test_edge_rules_are_the_token_endpoints(make_config: Callable[..., Config], hooks: FamilyHooks) -> None:
    config = make_config(issuer="https://as.example.com", clients=family_clients(), hooks=hooks)
    fam = await start_family(config)
    auth = ("web", CREDENTIALS["web"])
    async with http_client(AttestoMiddleware(not_found_app, config), "http://as.example.com") as plain:
        r = await plain.post(REVOKE, data={"token": fam.refresh_token}, auth=auth)
        assert (r.status_code, r.json()["error"]) == (400, "invalid_request")  # RFC 6749 §3.2 / RFC 7009 §2
    async with http_client(AttestoMiddleware(not_found_app, config), "https://as.example.com") as tls:
        for method in ("GET", "PUT", "DELETE"):
            r = await tls.request(method, REVOKE)
            assert r.status_code == 405
            assert r.headers["allow"] == "POST"
        r = await tls.post(f"{REVOKE}?token={fam.refresh_token}", data={"token": "x"}, auth=auth)
        assert r.json()["error"] == "invalid_request"  # the token never in a URL
        r = await tls.post(REVOKE, content=b'{"token": "x"}', headers={"content-type": "application/json"}, auth=auth)
        assert r.json()["error"] == "invalid_request"
        r = await tls.post(REVOKE, content=b"token=a&token=b", headers={"content-type": _FORM}, auth=auth)
        assert r.json()["error"] == "invalid_request"
        r = await tls.post(REVOKE, content=b"token=" + b"a" * 70000, headers={"content-type": _FORM}, auth=auth)
        assert r.status_code == 413
    denials = hooks.named("token_denied")
    assert denials
    assert all(e.data["endpoint"] == "revocation" for e in denials)
    async with http_client(AttestoMiddleware(not_found_app, config), "https://as.example.com") as tls:
        assert await active(tls, fam.refresh_token, "web")


_FORM = "application/x-www-form-urlencoded"


# ------------------------------------------------------------------ a store that cannot be reached


class FlakyStore(MemoryStore):
    """A memory store whose family and access-token writes can be switched off."""

    down = False

    async def revoke_family(self, family_id: str, until: float) -> bool:
        if self.down:
            raise StoreUnavailable("connection refused")
        return await super().revoke_family(family_id, until)

    async def revoke_access_token(self, jti: str, expires_at: float) -> None:
        if self.down:
            raise StoreUnavailable("connection refused")
        await super().revoke_access_token(jti, expires_at)


async def test_an_unreachable_store_is_503_never_a_reported_success(
    make_config: Callable[..., Config], clock: FakeClock, hooks: FamilyHooks
) -> None:
    store = FlakyStore(clock=clock, warn=False)
    config = make_config(clients=family_clients(), store=store, hooks=hooks)
    fam = await start_family(config)
    store.down = True
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        for token in (fam.refresh_token, fam.access_token):
            r = await revoke(http, token)
            assert r.status_code == 503
            assert r.json()["error"] == "temporarily_unavailable"
            assert r.headers["retry-after"] == "5"
        assert hooks.named("token_revoked") == []
        (first, _) = hooks.named("token_denied")
        assert first.data["endpoint"] == "revocation"
        store.down = False
        assert await states(http, fam) == [True, True]  # nothing was revoked, and nothing claimed it was


async def test_core_revoke_is_conn_free(cfg: Config) -> None:
    from attesto_asgi.core.revocation import revoke as core_revoke
    from attesto_asgi.model import PresentedToken, Revoked

    fam = await start_family(cfg)
    web = cfg.client("web")
    assert isinstance(web, Client)
    out = await core_revoke(cfg, PresentedToken(client=web, token=fam.refresh_token))
    assert isinstance(out, Revoked)
    assert [e.name for e in out.events] == ["token_revoked"]
    assert await cfg.backend.family_revoked(fam.family_id)


async def test_revoking_the_refresh_token_of_a_code_grant_revokes_its_access_token(
    http: httpx.AsyncClient, cfg: Config
) -> None:
    tokens, _ = await code_grant(http, cfg, "offline_access read")
    assert await active(http, tokens["access_token"])
    assert_empty_200(await revoke(http, tokens["refresh_token"]))
    assert not await active(http, tokens["access_token"])
    assert not await active(http, tokens["refresh_token"], "web")

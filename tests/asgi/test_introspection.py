"""RFC 7662 token introspection through HTTP."""

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
from attesto_asgi.core.tokens import mint_access_token
from tests.families import (
    API,
    CREDENTIALS,
    RS_SECRET,
    FamilyHooks,
    code_grant,
    context,
    family_clients,
    rotate,
    start_family,
)
from tests.helpers import ISSUER, FakeClock, http_client, not_found_app, standard_clients

INTROSPECT = "/oauth/introspect"


async def introspect(http: httpx.AsyncClient, token: str, client_id: str = "rs", **form: str) -> httpx.Response:
    return await http.post(INTROSPECT, data={"token": token, **form}, auth=(client_id, CREDENTIALS[client_id]))


async def body(http: httpx.AsyncClient, token: str, client_id: str = "rs") -> dict[str, object]:
    r = await introspect(http, token, client_id)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    out: dict[str, object] = r.json()
    return out


# ------------------------------------------------------------------ active tokens


async def test_an_active_access_token_is_described(http: httpx.AsyncClient, cfg: Config, clock: FakeClock) -> None:
    fam = await start_family(cfg)
    now = int(clock.now)
    assert await body(http, fam.access_token) == {
        "active": True,
        "scope": "read write",
        "client_id": "web",
        "sub": "alice",
        "aud": API,
        "iss": ISSUER,
        "exp": now + cfg.access_token_ttl,
        "iat": now,
        "jti": fam.access_claims["jti"],
        "token_type": "Bearer",
    }


async def test_a_refresh_token_is_described_to_its_own_client_only(
    http: httpx.AsyncClient, cfg: Config, clock: FakeClock
) -> None:
    fam = await start_family(cfg)
    now = int(clock.now)
    assert await body(http, fam.refresh_token, "web") == {
        "active": True,
        "scope": "read write",
        "client_id": "web",
        "sub": "alice",
        "iss": ISSUER,
        "exp": now + cfg.refresh_token_ttl,
        "iat": now,
    }
    assert await body(http, fam.refresh_token, "rs") == {"active": False}


async def test_act_and_cnf_are_passed_through(http: httpx.AsyncClient, cfg: Config) -> None:
    web = cfg.client("web")
    assert web is not None
    delegated = await mint_access_token(
        context(cfg, web), client=web, subject="alice", scope=("read",), audience=(API,), act={"sub": "svc"}
    )
    out = await body(http, delegated.token)
    assert out["act"] == {"sub": "svc"}
    assert "cnf" not in out
    bound = dict(delegated.claims, jti="bound-1", cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
    del bound["act"]
    out = await body(http, cfg.keys.signer().sign(bound, "at+jwt"))
    assert out["cnf"] == {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
    assert "act" not in out


async def test_a_multi_audience_token_keeps_its_audience_list(http: httpx.AsyncClient, cfg: Config) -> None:
    fam = await start_family(cfg, audience=(API, "https://billing.example.com"))
    assert (await body(http, fam.access_token))["aud"] == [API, "https://billing.example.com"]


# ------------------------------------------------------------------ inactive tokens


async def test_every_token_of_a_revoked_family_is_inactive(http: httpx.AsyncClient, cfg: Config) -> None:
    # What code reuse and refresh reuse do to a family (revoke_family in the store), and
    # what a revocation request does: every access token and refresh token goes inactive.
    first = await start_family(cfg)
    second = await rotate(cfg, first)
    bystander = await start_family(cfg)
    before = [await body(http, t) for t in (first.access_token, second.access_token)]
    assert [b["active"] for b in before] == [True, True]
    assert (await body(http, second.refresh_token, "web"))["active"] is True

    assert await cfg.backend.revoke_family(first.family_id, cfg.clock() + 86400)

    for token in (first.access_token, second.access_token):
        assert await body(http, token) == {"active": False}
    for token in (first.refresh_token, second.refresh_token):
        assert await body(http, token, "web") == {"active": False}
    assert (await body(http, bystander.access_token))["active"] is True


async def test_a_rotated_refresh_token_is_inactive(http: httpx.AsyncClient, cfg: Config) -> None:
    first = await start_family(cfg)
    second = await rotate(cfg, first)
    assert await body(http, first.refresh_token, "web") == {"active": False}
    assert (await body(http, second.refresh_token, "web"))["active"] is True


async def test_expired_tokens_are_inactive(http: httpx.AsyncClient, cfg: Config, clock: FakeClock) -> None:
    fam = await start_family(cfg)
    clock.advance(cfg.access_token_ttl)
    assert await body(http, fam.access_token) == {"active": False}
    assert (await body(http, fam.refresh_token, "web"))["active"] is True
    clock.advance(cfg.refresh_token_ttl)
    assert await body(http, fam.refresh_token, "web") == {"active": False}


async def test_a_revoked_access_token_is_inactive(http: httpx.AsyncClient, cfg: Config) -> None:
    fam = await start_family(cfg)
    await cfg.backend.revoke_access_token(fam.access_claims["jti"], fam.access_claims["exp"])
    assert await body(http, fam.access_token) == {"active": False}
    assert (await body(http, fam.refresh_token, "web"))["active"] is True


async def test_a_disabled_user_has_no_active_tokens_but_a_clients_own_token_stays(
    http: httpx.AsyncClient, cfg: Config, hooks: FamilyHooks
) -> None:
    fam = await start_family(cfg)
    r = await http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("svc", CREDENTIALS["svc"]))
    own = r.json()["access_token"]
    hooks.disabled.update({"alice", "svc"})
    assert await body(http, fam.access_token) == {"active": False}
    assert await body(http, fam.refresh_token, "web") == {"active": False}
    assert (await body(http, own))["active"] is True  # sub is the client itself: not a user


@pytest.mark.parametrize(
    "token",
    [
        "unknown",
        "A" * 22 + "." + "B" * 43,
        "x.y.z",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "é" * 40,
        "a" * 60000,
    ],
)
async def test_unknown_and_malformed_tokens_are_inactive(http: httpx.AsyncClient, token: str) -> None:
    assert await body(http, token) == {"active": False}


async def test_id_tokens_and_foreign_tokens_are_inactive(
    http: httpx.AsyncClient, cfg: Config, make_config: Callable[..., Config]
) -> None:
    fam = await start_family(cfg)
    as_id_token = cfg.keys.signer().sign(fam.access_claims, "JWT")
    assert await body(http, as_id_token) == {"active": False}
    foreign = await start_family(make_config(keys=KeySet.generate("ES256"), clients=family_clients()))
    assert await body(http, foreign.access_token) == {"active": False}


# ------------------------------------------------------------------ who may ask


async def test_only_clients_allowed_to_introspect_may_ask(
    make_config: Callable[..., Config], hooks: FamilyHooks, cfg: Config
) -> None:
    fam = await start_family(cfg)
    public = Client(client_id="pub", token_endpoint_auth_method="none", may_introspect=True)
    config = make_config(clients=(*standard_clients(), *family_clients(), public), hooks=hooks, store=cfg.store)
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        not_allowed = await introspect(http, fam.access_token, "svc")
        assert not_allowed.status_code == 400
        assert not_allowed.json()["error"] == "unauthorized_client"
        assert not_allowed.headers["cache-control"] == "no-store"
        anonymous = await http.post(INTROSPECT, data={"token": fam.access_token, "client_id": "pub"})
        assert anonymous.json()["error"] == "unauthorized_client"  # a public client cannot prove who it is
        wrong = await http.post(INTROSPECT, data={"token": fam.access_token}, auth=("rs", RS_SECRET + "x"))
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "invalid_client"
        missing = await http.post(INTROSPECT, data={"token_type_hint": "access_token"}, auth=("rs", RS_SECRET))
        assert missing.json()["error"] == "invalid_request"
    denials = [e for e in hooks.events if e.name == "token_denied"]
    assert [e.data["endpoint"] for e in denials] == ["introspection"] * 4
    assert all(fam.access_token not in repr(e) for e in hooks.events)


async def test_introspection_event_is_recorded_without_the_token(
    http: httpx.AsyncClient, cfg: Config, hooks: FamilyHooks
) -> None:
    fam = await start_family(cfg)
    await introspect(http, fam.access_token)
    await introspect(http, fam.refresh_token, "rs")
    (first, second) = [e for e in hooks.events if e.name == "token_introspected"]
    assert first.client_id == "rs"
    assert first.subject == "alice"
    assert first.data == {
        "active": True,
        "reason": "active",
        "token_type": "access_token",
        "jti": fam.access_claims["jti"],
    }
    assert second.data["active"] is False
    assert second.data["reason"] == "refresh token of another client"
    assert second.data["family_id"] == fam.family_id
    for e in hooks.events:
        assert fam.access_token not in repr(e)
        assert fam.refresh_token not in repr(e)


async def test_an_unreachable_store_is_503(make_config: Callable[..., Config], clock: FakeClock) -> None:
    class DownStore(MemoryStore):
        async def access_token_revoked(self, jti: str, family_id: str | None) -> bool:
            raise StoreUnavailable("connection refused")

        async def get_refresh(self, family_id: str, token_hash: str) -> None:
            raise StoreUnavailable("connection refused")

    config = make_config(clients=family_clients(), store=DownStore(clock=clock, warn=False))
    fam = await start_family(config)
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        for token, client_id in ((fam.access_token, "rs"), (fam.refresh_token, "web")):
            r = await introspect(http, token, client_id)
            assert r.status_code == 503
            assert r.json()["error"] == "temporarily_unavailable"
            assert r.headers["retry-after"] == "5"


async def test_discovery_publishes_both_endpoints(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/.well-known/openid-configuration")).json()
    assert doc["revocation_endpoint"] == "http://localhost/oauth/revoke"
    assert doc["introspection_endpoint"] == "http://localhost/oauth/introspect"
    assert "none" in doc["revocation_endpoint_auth_methods_supported"]
    assert "none" not in doc["introspection_endpoint_auth_methods_supported"]
    assert "private_key_jwt" in doc["introspection_endpoint_auth_methods_supported"]
    # RFC 8414 §2: the signing algorithms MUST be listed when a JWT method is.
    assert "ES256" in doc["revocation_endpoint_auth_signing_alg_values_supported"]
    assert "ES256" in doc["introspection_endpoint_auth_signing_alg_values_supported"]


async def test_after_code_reuse_every_token_of_the_family_is_inactive(http: httpx.AsyncClient, cfg: Config) -> None:
    tokens, form = await code_grant(http, cfg, "openid offline_access read", resource=(API,))
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    described = await body(http, access)
    assert described["active"] is True
    assert (described["sub"], described["client_id"], described["aud"]) == ("alice", "web", API)
    assert described["scope"] == "openid offline_access read"
    assert (await body(http, refresh, "web"))["active"] is True

    replay = await http.post("/oauth/token", data=form, auth=("web", CREDENTIALS["web"]))  # RFC 6749 §4.1.2
    assert replay.json()["error"] == "invalid_grant"

    assert await body(http, access) == {"active": False}
    assert await body(http, refresh, "web") == {"active": False}


async def test_after_refresh_reuse_every_token_of_the_family_is_inactive(http: httpx.AsyncClient, cfg: Config) -> None:
    tokens, _ = await code_grant(http, cfg, "openid offline_access read", resource=(API,))
    web = ("web", CREDENTIALS["web"])
    rt0, at0 = tokens["refresh_token"], tokens["access_token"]
    first = await http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": rt0}, auth=web)
    assert first.status_code == 200
    rt1, at1 = first.json()["refresh_token"], first.json()["access_token"]
    for token, owner in ((at0, "rs"), (at1, "rs"), (rt1, "web")):
        assert (await body(http, token, owner))["active"] is True
    assert await body(http, rt0, "web") == {"active": False}  # rotated away

    # RFC 9700 §4.14.2: the rotated RT0 presented again is reuse; the whole family is revoked.
    replay = await http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": rt0}, auth=web)
    assert replay.json()["error"] == "invalid_grant"
    for token, owner in ((at0, "rs"), (at1, "rs"), (rt0, "web"), (rt1, "web")):
        assert await body(http, token, owner) == {"active": False}


async def test_after_a_revocation_request_every_token_of_the_family_is_inactive(
    http: httpx.AsyncClient, cfg: Config
) -> None:
    tokens, _ = await code_grant(http, cfg, "openid offline_access read", resource=(API,))
    web = ("web", CREDENTIALS["web"])
    refreshed = await http.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=web
    )
    rt1 = refreshed.json()["refresh_token"]
    revoked = await http.post("/oauth/revoke", data={"token": rt1, "token_type_hint": "refresh_token"}, auth=web)
    assert revoked.status_code == 200
    assert revoked.content == b""
    for token, owner in ((tokens["access_token"], "rs"), (refreshed.json()["access_token"], "rs"), (rt1, "web")):
        assert await body(http, token, owner) == {"active": False}
    again = await http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": rt1}, auth=web)
    assert again.json()["error"] == "invalid_grant"


async def test_a_disabled_user_who_shares_a_clients_id_has_no_active_tokens(
    http: httpx.AsyncClient, cfg: Config, hooks: FamilyHooks
) -> None:
    # Whose token it is comes from where it was minted (a user's family), not from the name:
    # a user "web" signed in through client "web" is still a user, as the refresh grant holds.
    fam = await start_family(cfg, subject="web")
    hooks.disabled.add("web")
    assert await body(http, fam.access_token) == {"active": False}
    assert await body(http, fam.refresh_token, "web") == {"active": False}

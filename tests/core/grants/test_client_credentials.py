"""RFC 6749 §4.4 client_credentials through HTTP, and RFC 9068 access-token contents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet

from attesto_asgi import AttestoMiddleware, Client, Config, Hooks
from tests.helpers import ISSUER, SVC_SECRET, http_client, jwt_claims, not_found_app

AUTH = ("svc", SVC_SECRET)


async def token(client: httpx.AsyncClient, **form: Any) -> httpx.Response:
    return await client.post("/oauth/token", data={"grant_type": "client_credentials", **form}, auth=AUTH)


async def test_token_is_an_rfc9068_jwt_that_verifies_with_the_published_jwks(
    client: httpx.AsyncClient, config: Config
) -> None:
    r = await token(client)
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert "refresh_token" not in body  # RFC 6749 §4.4.3
    jwks = JoseKeySet.import_key_set((await client.get("/.well-known/jwks.json")).json())
    decoded = jwt.decode(body["access_token"], jwks, algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt"  # RFC 9068 §2.1
    assert decoded.header["kid"] == config.keys.signer().kid
    claims = decoded.claims
    assert set(claims) == {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"}
    assert claims["iss"] == ISSUER
    assert claims["sub"] == "svc"  # subject = the client itself
    assert claims["client_id"] == "svc"
    assert claims["aud"] == "svc"
    assert claims["iat"] == int(config.clock())
    assert body["expires_in"] == claims["exp"] - claims["iat"] == 900
    assert claims["scope"] == body["scope"] == "read"  # the client's default scope


async def test_jti_is_unique_per_token(client: httpx.AsyncClient) -> None:
    jtis = {jwt_claims((await token(client)).json()["access_token"])["jti"] for _ in range(5)}
    assert len(jtis) == 5


async def test_requested_subset_of_allowed_scope(client: httpx.AsyncClient) -> None:
    r = await token(client, scope="write read")
    assert r.json()["scope"] == "write read"
    assert jwt_claims(r.json()["access_token"])["scope"] == "write read"


async def test_scope_beyond_allowed_is_invalid_scope(client: httpx.AsyncClient) -> None:
    r = await token(client, scope="read delete")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"


async def test_resource_sets_audience(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "resource": ["https://api.example.com", "https://billing.example.com"],
        },
        auth=AUTH,
    )
    assert r.status_code == 200
    assert jwt_claims(r.json()["access_token"])["aud"] == ["https://api.example.com", "https://billing.example.com"]


async def test_resource_not_allowed_is_invalid_target(client: httpx.AsyncClient) -> None:
    r = await token(client, resource="https://evil.example.com")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_target"


async def test_per_client_ttl_and_default_audience(make_config: Callable[..., Config]) -> None:
    c = Client(
        client_id="short",
        client_secret="short-secret-0123456789",
        grant_types=("client_credentials",),
        access_token_ttl=60,
    )
    config = make_config(clients=(c,), default_audience="https://default.example.com")
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        r = await http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=("short", "short-secret-0123456789")
        )
    claims = jwt_claims(r.json()["access_token"])
    assert r.json()["expires_in"] == 60 == claims["exp"] - claims["iat"]
    assert claims["aud"] == "https://default.example.com"
    assert "scope" not in r.json()  # no scope registered, none granted


async def test_hook_claims_are_added_but_never_override_reserved_ones(make_config: Callable[..., Config]) -> None:
    class Extra(Hooks):
        async def access_token_claims(self, client: Any, subject: str, scope: Any) -> dict[str, Any]:
            return {
                "tenant": "acme",
                "sub": "attacker",
                "iss": "https://evil",
                # Reserved names this token leaves out: a hook must not forge them either.
                "act": {"sub": "admin"},
                "cnf": {"jkt": "forged"},
                "fid": "someone-elses-family",
                "auth_time": 1,
                "acr": "urn:forged",
                "amr": ["hwk"],
            }

    config = make_config(hooks=Extra())
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        r = await token(http)
    claims = jwt_claims(r.json()["access_token"])
    assert claims["tenant"] == "acme"
    assert claims["sub"] == "svc"
    assert claims["iss"] == ISSUER
    assert not {"act", "cnf", "fid", "auth_time", "acr", "amr"} & set(claims)


async def test_rs256_active_key_signs(make_config: Callable[..., Config]) -> None:
    from tests.helpers import keyset

    keys = keyset("RS256")
    config = make_config(keys=keys)
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        r = await token(http)
    jwks = JoseKeySet.import_key_set(keys.public_jwks())
    assert jwt.decode(r.json()["access_token"], jwks, algorithms=["RS256"]).header["alg"] == "RS256"

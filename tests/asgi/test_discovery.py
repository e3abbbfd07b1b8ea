"""Discovery metadata (RFC 8414, OIDC Discovery) and the JWKS document."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from attesto_asgi import AttestoMiddleware, Config
from tests.helpers import http_client, keyset, not_found_app


async def test_both_metadata_documents_describe_the_server(client: httpx.AsyncClient, config: Config) -> None:
    oidc = (await client.get("/.well-known/openid-configuration")).json()
    oauth = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert oidc == oauth
    assert oidc["issuer"] == "http://localhost"
    assert oidc["token_endpoint"] == "http://localhost/oauth/token"
    assert oidc["jwks_uri"] == "http://localhost/.well-known/jwks.json"
    assert "client_credentials" in oidc["grant_types_supported"]
    assert set(oidc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "private_key_jwt",
        "none",
    }
    assert oidc["id_token_signing_alg_values_supported"] == ["ES256"]
    assert oidc["code_challenge_methods_supported"] == ["S256"]
    assert "read" in oidc["scopes_supported"]


async def test_jwks_is_the_public_key_set(client: httpx.AsyncClient, config: Config) -> None:
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == config.keys.public_jwks()
    assert all("d" not in k for k in r.json()["keys"])


async def test_issuer_with_path_uses_both_well_known_rules(make_config: Callable[..., Config]) -> None:
    config = make_config(issuer="http://localhost/tenant-a", keys=keyset("ES256", "EdDSA"))
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        oidc = await http.get("/tenant-a/.well-known/openid-configuration")  # OIDC Discovery §4
        oauth = await http.get("/.well-known/oauth-authorization-server/tenant-a")  # RFC 8414 §3
        assert oidc.status_code == oauth.status_code == 200
        assert oidc.json()["issuer"] == "http://localhost/tenant-a"
        assert oidc.json()["id_token_signing_alg_values_supported"] == ["ES256", "EdDSA"]
        assert (await http.get("/.well-known/openid-configuration")).status_code == 404  # reaches the host app


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/jwks.json"])
async def test_metadata_is_get_only(client: httpx.AsyncClient, path: str) -> None:
    r = await client.post(path)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    head = await client.head(path)
    assert head.status_code == 200
    assert head.content == b""


async def test_extra_metadata_and_host_endpoints(make_config: Callable[..., Config]) -> None:
    config = make_config(
        authorization_endpoint="http://localhost/authorize",
        userinfo_endpoint="http://localhost/userinfo",
        extra_metadata={"service_documentation": "http://localhost/docs"},
    )
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        doc = (await http.get("/.well-known/openid-configuration")).json()
    assert doc["authorization_endpoint"] == "http://localhost/authorize"
    assert doc["userinfo_endpoint"] == "http://localhost/userinfo"
    assert doc["service_documentation"] == "http://localhost/docs"


async def test_every_assertion_algorithm_accepted_is_advertised(client: httpx.AsyncClient) -> None:
    # RFC 8414 §2: the list of algorithms supported; client_secret_jwt verifies HS384/HS512 too.
    oidc = (await client.get("/.well-known/openid-configuration")).json()
    for field in ("token_endpoint", "revocation_endpoint", "introspection_endpoint"):
        assert {"HS256", "HS384", "HS512", "ES256", "RS256"} <= set(oidc[f"{field}_auth_signing_alg_values_supported"])


async def test_an_issuer_path_with_escapes_serves_its_documents(make_config: Callable[..., Config]) -> None:
    # ASGI's path is percent-decoded: the routes are too.
    config = make_config(issuer="http://localhost/t%20x")
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        for path in ("/t%20x/.well-known/openid-configuration", "/.well-known/oauth-authorization-server/t%20x"):
            r = await http.get(path)
            assert r.status_code == 200, path
            assert r.json()["issuer"] == "http://localhost/t%20x"


def test_without_an_authorization_endpoint_the_host_is_warned(
    make_config: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 8414 §2: authorization_endpoint is REQUIRED while a grant uses it (a client has
    # authorization_code); the page is the host's, so it is told, once, at start-up.
    AttestoMiddleware(not_found_app, make_config())
    assert "authorization_endpoint is not set" in caplog.text
    caplog.clear()
    AttestoMiddleware(not_found_app, make_config(authorization_endpoint="http://localhost/authorize"))
    assert "authorization_endpoint" not in caplog.text

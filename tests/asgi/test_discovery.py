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

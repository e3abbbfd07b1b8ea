"""End to end: authlib's OAuth client drives the authorization code flow with PKCE (S256)
against a host app served by a real uvicorn server on a free loopback port.

The host app's ``/authorize`` page stands in for login and consent and calls ``issue_code``;
the client exchanges the code at the middleware's token endpoint; authlib's OIDC ID-token
validation (JWKS from the discovery document, ``iss``, ``aud``, ``exp``, ``nonce``,
``at_hash``) accepts the ID token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import uvicorn
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.integrations.httpx_client import OAuthError as ClientOAuthError
from authlib.integrations.starlette_client import OAuth
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from attesto_asgi import AttestoMiddleware, Client, Config, MemoryStore, OAuthError, issue_code
from attesto_asgi.core.refresh import split_refresh_token
from tests.helpers import free_port, keyset

RP_SECRET = "rp-secret-0123456789abcdefghijklmnopqrstuvwxyz"
RP_REDIRECT = "https://rp.example.com/callback"
LOGGED_IN_AT = int(time.time()) - 5


def host_app(config: Config) -> Starlette:
    """The host's authorization endpoint: the user is already logged in and consents."""

    async def authorize(request: Request) -> Response:
        q = request.query_params
        if q.get("response_type") != "code":
            return JSONResponse({"error": "unsupported_response_type"}, status_code=400)
        try:
            code = await issue_code(
                config,
                client_id=q.get("client_id", ""),
                redirect_uri=q.get("redirect_uri", ""),
                subject="alice",
                scope=q.get("scope"),
                code_challenge=q.get("code_challenge"),
                code_challenge_method=q.get("code_challenge_method", "S256"),
                auth_time=LOGGED_IN_AT,
                nonce=q.get("nonce"),
                amr=("pwd",),
            )
        except OAuthError as exc:
            return JSONResponse(exc.body(), status_code=400)
        # RFC 9207: iss in the authorization response.
        query = urlencode({"code": code, "state": q.get("state", ""), "iss": config.issuer})
        return RedirectResponse(f"{q['redirect_uri']}?{query}", status_code=302)

    return Starlette(routes=[Route("/authorize", authorize)])


@pytest.fixture
def server() -> Iterator[Config]:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    config = Config(
        issuer=issuer,
        keys=keyset("ES256", "RS256"),
        store=MemoryStore(warn=False),
        authorization_endpoint=f"{issuer}/authorize",
        clients=(
            Client(
                client_id="rp",
                client_secret=RP_SECRET,
                grant_types=("authorization_code", "refresh_token"),
                redirect_uris=(RP_REDIRECT,),
                scope=("openid", "profile", "offline_access"),
                # The OIDC default a relying party may rely on.
                id_token_signed_response_alg="RS256",
            ),
            Client(
                client_id="public-rp",
                token_endpoint_auth_method="none",
                grant_types=("authorization_code", "refresh_token"),
                redirect_uris=(RP_REDIRECT,),
                scope=("openid", "profile", "offline_access"),
            ),
        ),
    )
    app = AttestoMiddleware(host_app(config), config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(250):
        if server.started:
            break
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield config
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def client_options(client_id: str) -> dict[str, Any]:
    if client_id == "rp":
        return {"client_secret": RP_SECRET, "token_endpoint_auth_method": "client_secret_basic"}
    return {"token_endpoint_auth_method": "none"}


@pytest.mark.parametrize("client_id", ["rp", "public-rp"])
async def test_authlib_client_code_flow_with_pkce_and_oidc_validation(server: Config, client_id: str) -> None:
    config = server
    issuer = config.issuer
    discovery_url = f"{issuer}/.well-known/openid-configuration"
    async with httpx.AsyncClient() as browser:
        metadata = (await browser.get(discovery_url)).json()
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "authorization_code" in metadata["grant_types_supported"]

    verifier = generate_token(64)
    nonce = generate_token(20)
    async with AsyncOAuth2Client(
        client_id=client_id,
        redirect_uri=RP_REDIRECT,
        scope="openid profile offline_access",
        code_challenge_method="S256",
        **client_options(client_id),
    ) as oauth:
        url, state = oauth.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        query = parse_qs(urlsplit(url).query)
        assert query["code_challenge_method"] == ["S256"]
        assert "code_verifier" not in query

        # The user agent follows the authorization URL; the host app redirects back with a code.
        async with httpx.AsyncClient() as browser:
            redirect = await browser.get(url, follow_redirects=False)
        assert redirect.status_code == 302, redirect.text
        callback = redirect.headers["location"]
        returned = parse_qs(urlsplit(callback).query)
        assert returned["state"] == [state]
        assert returned["iss"] == [issuer]

        token = await oauth.fetch_token(
            metadata["token_endpoint"], authorization_response=callback, code_verifier=verifier
        )
        assert token["token_type"] == "Bearer"
        assert {"access_token", "refresh_token", "id_token"} <= token.keys()

        # authlib's OIDC validation: keys from the discovery document's jwks_uri, iss, aud,
        # exp, nonce and at_hash (CodeIDToken).
        registry = OAuth()
        relying_party = registry.register(
            "attesto", client_id=client_id, server_metadata_url=discovery_url, **client_options(client_id)
        )
        userinfo = await relying_party.parse_id_token(token, nonce=nonce)
        assert userinfo["sub"] == "alice"
        assert userinfo["aud"] == client_id
        assert userinfo["nonce"] == nonce
        assert userinfo["auth_time"] == LOGGED_IN_AT
        assert userinfo["amr"] == ["pwd"]
        with pytest.raises(Exception, match="nonce"):
            await relying_party.parse_id_token(token, nonce="not-the-nonce")

        # The same code again: refused, and the tokens it produced are revoked.
        with pytest.raises(ClientOAuthError, match="invalid_grant"):
            await oauth.fetch_token(metadata["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    split = split_refresh_token(token["refresh_token"])
    assert split is not None
    assert await config.backend.get_refresh(*split) is None
    assert await config.backend.family_revoked(split[0])


async def test_wrong_verifier_over_real_http_is_invalid_grant(server: Config) -> None:
    config = server
    verifier = generate_token(64)
    async with AsyncOAuth2Client(
        client_id="public-rp",
        redirect_uri=RP_REDIRECT,
        scope="openid",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    ) as oauth:
        url, _ = oauth.create_authorization_url(f"{config.issuer}/authorize", code_verifier=verifier)
        async with httpx.AsyncClient() as browser:
            callback = (await browser.get(url, follow_redirects=False)).headers["location"]
        with pytest.raises(ClientOAuthError, match="invalid_grant"):
            await oauth.fetch_token(
                config.token_endpoint, authorization_response=callback, code_verifier=generate_token(64)
            )

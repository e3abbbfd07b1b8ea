"""The FastAPI resource server, served by uvicorn next to the example provider (also served):
it fetches the provider's JWKS at start-up and accepts only tokens for its own audience
with the scope each route needs (RFC 6750 errors otherwise)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from examples.fastapi_api import create_app as create_api
from examples.provider import create_app as create_provider
from tests.examples.support import ALICE_SUB, Deployment, pkce, provider_sign_in, serve


@pytest.fixture
def servers(deployment: Deployment) -> Iterator[Deployment]:
    with serve(create_provider(deployment.provider_settings), deployment.provider_sock):
        api = create_api(issuer=deployment.provider_url, audience=deployment.api_url)
        with serve(api, deployment.api_sock):
            yield deployment


def service_token(d: Deployment, **form: str) -> str:
    r = httpx.post(
        f"{d.provider_url}/oauth/token",
        data={"grant_type": "client_credentials", **form},
        auth=("reports-cli", d.api_secret),
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def user_token(d: Deployment, scope: str, resource: str | None) -> dict[str, Any]:
    """Alice signs in through the example RP's registration; the code is redeemed here."""
    verifier, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": "demo-rp",
        "redirect_uri": f"{d.rp_url}/callback",
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if resource:
        params["resource"] = resource
    with httpx.Client() as http:
        code = provider_sign_in(http, d.provider_url, params)["code"]
        r = http.post(
            f"{d.provider_url}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": f"{d.rp_url}/callback",
                "code_verifier": verifier,
            },
            auth=("demo-rp", d.rp_secret),
        )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def get(d: Deployment, path: str, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{d.api_url}{path}", headers=headers)


def test_service_token_for_the_api_reads_reports(servers: Deployment) -> None:
    token = service_token(servers, resource=servers.api_url)
    r = get(servers, "/reports", token)
    assert r.status_code == 200, r.text
    assert r.json()["owner"] == "reports-cli"  # client_credentials: the subject is the client
    who = get(servers, "/whoami", token).json()
    assert who["aud"] == servers.api_url
    assert who["client_id"] == "reports-cli"
    assert who["scope"] == "reports:read"


def test_user_token_for_the_api_carries_the_user(servers: Deployment) -> None:
    body = user_token(servers, "openid reports:read", resource=servers.api_url)
    r = get(servers, "/reports", body["access_token"])
    assert r.status_code == 200, r.text
    assert r.json()["owner"] == ALICE_SUB


def test_missing_scope_is_403_insufficient_scope(servers: Deployment) -> None:
    token = user_token(servers, "openid profile", resource=servers.api_url)["access_token"]
    assert get(servers, "/whoami", token).status_code == 200  # a valid token for this API
    r = get(servers, "/reports", token)
    assert r.status_code == 403
    assert r.headers["www-authenticate"] == 'Bearer realm="reports", error="insufficient_scope", scope="reports:read"'


def test_tokens_for_another_audience_are_refused(servers: Deployment) -> None:
    # Without a resource indicator the token is for the provider's own UserInfo.
    token = service_token(servers)
    r = get(servers, "/reports", token)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="reports", error="invalid_token"'
    user = user_token(servers, "openid reports:read", resource=None)
    assert get(servers, "/reports", user["access_token"]).status_code == 401
    assert get(servers, "/reports", user["id_token"]).status_code == 401  # an ID token is not an access token


def test_missing_malformed_and_forged_tokens(servers: Deployment) -> None:
    r = get(servers, "/reports", None)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="reports"'  # RFC 6750 §3.1: no error code
    assert get(servers, "/reports", "garbage").status_code == 401
    header, payload, signature = service_token(servers, resource=servers.api_url).split(".")
    claims = base64.urlsafe_b64decode(payload + "==").replace(b'"reports-cli"', b'"someone-else"')
    forged = base64.urlsafe_b64encode(claims).rstrip(b"=").decode()
    assert get(servers, "/reports", f"{header}.{forged}.{signature}").status_code == 401

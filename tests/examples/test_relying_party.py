"""The example relying party over real HTTP (provider and RP under uvicorn): the sign-in
through its pages, and the responses it must refuse (RFC 9207 issuer, unknown state, CSRF)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from examples.provider import create_app as create_provider
from examples.relying_party import create_app as create_rp
from tests.examples.support import ALICE, ALICE_SUB, Deployment, form_fields, query_of, serve


@pytest.fixture
def running(deployment: Deployment) -> Iterator[tuple[Deployment, Any]]:
    rp_app = create_rp(deployment.rp_settings)
    with (
        serve(create_provider(deployment.provider_settings), deployment.provider_sock),
        serve(rp_app, deployment.rp_sock),
    ):
        yield deployment, rp_app


def start(http: httpx.Client, d: Deployment) -> str:
    """Follow the RP's sign-in to the provider, log in and allow; the provider's redirect
    back to the RP (not followed)."""
    login = http.get(f"{d.rp_url}/login", follow_redirects=True)
    assert str(login.url).startswith(f"{d.provider_url}/login?authz=")
    fields = form_fields(login.text, "/login") | {"username": ALICE[0], "password": ALICE[1]}
    consent = http.post(f"{d.provider_url}/login", data=fields, follow_redirects=True)
    r = http.post(f"{d.provider_url}/consent", data=form_fields(consent.text, "/consent") | {"decision": "allow"})
    assert r.status_code == 303
    location: str = r.headers["location"]
    assert location.startswith(f"{d.rp_url}/callback?")
    return location


def test_sign_in_refresh_and_sign_out_over_http(running: tuple[Deployment, Any]) -> None:
    d, rp_app = running
    with httpx.Client() as http:
        callback = start(http, d)
        home = http.get(callback, follow_redirects=True)
        assert "Hello, Alice Liddell" in home.text
        assert ALICE_SUB in home.text
        (session,) = rp_app.state.rp.sessions.values()
        first = session.token["refresh_token"]
        # The RP's forms need its CSRF token.
        assert http.post(f"{d.rp_url}/refresh", data={"csrf": "forged"}).status_code == 303
        assert session.refresh_count == 0
        refreshed = http.post(f"{d.rp_url}/refresh", data=form_fields(home.text, "/refresh"), follow_redirects=True)
        assert session.refresh_count == 1
        assert session.token["refresh_token"] != first
        assert "Hello, Alice Liddell" in refreshed.text
        last = session.token["refresh_token"]
        out = http.post(f"{d.rp_url}/logout", data=form_fields(refreshed.text, "/logout"), follow_redirects=True)
        assert str(out.url).startswith(f"{d.rp_url}/logged-out?state=")
        assert "You are signed out" in out.text
        assert rp_app.state.rp.sessions == {}
        # Sign-out revoked the refresh token at the provider (RFC 7009): the family is dead.
        r = http.post(
            f"{d.provider_url}/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": last},
            auth=("demo-rp", d.rp_secret),
        )
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("iss", [None, "http://127.0.0.1:9/", "evil"])
def test_a_response_without_the_providers_issuer_is_rejected(running: tuple[Deployment, Any], iss: str | None) -> None:
    d, rp_app = running
    with httpx.Client() as http:
        q = query_of(start(http, d))
        params = {"code": q["code"], "state": q["state"]}
        if iss is not None:
            params["iss"] = iss
        r = http.get(f"{d.rp_url}/callback", params=params)
        assert r.status_code == 400
        assert "Wrong or missing issuer." in r.text
        assert rp_app.state.rp.sessions == {}
        # The untouched response still signs in: the rejected one spent nothing.
        ok = http.get(f"{d.rp_url}/callback", params=q, follow_redirects=True)
        assert "Hello, Alice Liddell" in ok.text


def test_an_error_response_for_a_state_we_never_sent_is_rejected(running: tuple[Deployment, Any]) -> None:
    d, _ = running
    r = httpx.get(f"{d.rp_url}/callback", params={"error": "access_denied", "state": "made-up", "iss": d.provider_url})
    assert r.status_code == 400
    assert "Unknown state." in r.text


def test_a_code_without_a_session_is_rejected(running: tuple[Deployment, Any]) -> None:
    d, rp_app = running
    with httpx.Client() as victim, httpx.Client() as attacker:
        callback = start(attacker, d)
        # Login CSRF: the attacker's response delivered to another browser (no matching state).
        r = victim.get(callback)
        assert r.status_code == 400
        assert "State mismatch." in r.text
    assert rp_app.state.rp.sessions == {}

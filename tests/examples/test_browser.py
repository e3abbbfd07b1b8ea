"""End to end in headless Chromium: the example relying party signs a user in at the example
provider, both served by uvicorn on loopback ports. Screenshots of every page are saved
under test-artifacts/examples/browser/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from playwright.sync_api import Page, sync_playwright

from examples.provider import create_app as create_provider
from examples.relying_party import create_app as create_rp
from tests.examples.browser import chromium_or_fail
from tests.examples.support import ALICE, ALICE_SUB, ARTIFACTS, Deployment, serve

TIMEOUT_MS = 20_000


class Shots:
    """Numbered full-page screenshots of one scenario."""

    def __init__(self, scenario: str) -> None:
        self.dir = ARTIFACTS / "browser" / scenario
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("*.png"):
            old.unlink()
        self.n = 0

    def __call__(self, page: Page, name: str) -> Path:
        self.n += 1
        path = self.dir / f"{self.n:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 1000
        return path


@pytest.fixture
def running(deployment: Deployment) -> Iterator[tuple[Deployment, Any]]:
    """Provider and relying party under uvicorn; yields the deployment and the RP app."""
    rp_app = create_rp(deployment.rp_settings)
    with (
        serve(create_provider(deployment.provider_settings), deployment.provider_sock),
        serve(rp_app, deployment.rp_sock),
    ):
        yield deployment, rp_app


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as p:
        browser = chromium_or_fail(p)
        try:
            context = browser.new_context(viewport={"width": 1000, "height": 800})
            context.set_default_timeout(TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


def claims_table(page: Page, table: str) -> dict[str, str]:
    rows = page.locator(f"#{table} tr")
    return {
        rows.nth(i).get_attribute("data-claim") or "": rows.nth(i).locator("td").inner_text()
        for i in range(rows.count())
    }


def to_provider_login(page: Page, d: Deployment) -> None:
    page.goto(f"{d.rp_url}/")
    page.click("#sign-in")
    page.wait_for_url(re.compile(re.escape(f"{d.provider_url}/login?authz=")))


def log_in(page: Page, password: str = ALICE[1]) -> None:
    page.fill("#username", ALICE[0])
    page.fill("#password", password)
    page.click("#sign-in")


def test_sign_in_refresh_and_sign_out(running: tuple[Deployment, Any], page: Page) -> None:
    d, rp_app = running
    shot = Shots("sign-in")
    page.goto(f"{d.rp_url}/")
    assert page.inner_text("h1") == "Welcome"
    shot(page, "rp-signed-out")

    page.click("#sign-in")
    page.wait_for_url(re.compile(re.escape(f"{d.provider_url}/login?authz=")))
    assert page.inner_text("#client-name") == "Example Relying Party"
    shot(page, "provider-login")

    log_in(page, "not-alices-password")
    page.wait_for_selector("#login-error")
    assert page.inner_text("#login-error") == "Wrong username or password."
    assert page.url.startswith(f"{d.provider_url}/login")
    shot(page, "wrong-password")

    log_in(page)
    page.wait_for_url(re.compile(re.escape(f"{d.provider_url}/consent?authz=")))
    scopes = page.locator("#scopes li")
    assert [scopes.nth(i).get_attribute("data-scope") for i in range(scopes.count())] == [
        "openid",
        "profile",
        "email",
        "offline_access",
    ]
    assert page.inner_text("#who") == "Signed in as Alice Liddell"
    shot(page, "consent")

    page.click("#allow")
    page.wait_for_url(f"{d.rp_url}/")
    assert page.inner_text("#greeting") == "Hello, Alice Liddell"
    id_claims = claims_table(page, "id-claims")
    assert id_claims["iss"] == d.provider_url
    assert id_claims["aud"] == "demo-rp"
    assert id_claims["sub"] == ALICE_SUB
    assert id_claims["name"] == "Alice Liddell"
    assert id_claims["email"] == "alice@example.org"
    assert id_claims["nonce"]  # authlib checked it against the one it sent
    assert "pwd" in id_claims["amr"]
    assert claims_table(page, "userinfo") == {
        "sub": ALICE_SUB,
        "name": "Alice Liddell",
        "preferred_username": "alice",
        "email": "alice@example.org",
        "email_verified": "True",
    }
    assert page.inner_text("#granted-scope") == "openid profile email offline_access"
    assert page.inner_text("#has-refresh") == "yes"
    shot(page, "signed-in")

    (session,) = rp_app.state.rp.sessions.values()
    before = dict(session.token)
    page.click("#refresh")
    page.wait_for_function("document.querySelector('#refresh-count').innerText === '1'")
    after = session.token
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]  # rotated
    assert claims_table(page, "userinfo")["sub"] == ALICE_SUB  # fetched with the new access token
    shot(page, "refreshed")

    page.click("#sign-out")
    page.wait_for_url(re.compile(re.escape(f"{d.rp_url}/logged-out?")))
    assert page.inner_text("#signed-out") == "You are signed out"
    assert rp_app.state.rp.sessions == {}
    shot(page, "signed-out")

    # The provider's session ended too: signing in again asks for the password.
    page.click("#sign-in")
    page.wait_for_url(re.compile(re.escape(f"{d.provider_url}/login?authz=")))
    shot(page, "login-again")


def test_denied_consent_shows_the_cancelled_page(running: tuple[Deployment, Any], page: Page) -> None:
    d, rp_app = running
    shot = Shots("denied")
    to_provider_login(page, d)
    log_in(page)
    page.wait_for_url(re.compile(re.escape(f"{d.provider_url}/consent?")))
    shot(page, "consent")
    page.click("#deny")
    page.wait_for_url(re.compile(re.escape(f"{d.rp_url}/callback?")))
    assert page.inner_text("#denied") == "Sign-in cancelled"
    query = parse_qs(urlsplit(page.url).query)
    assert query["error"] == ["access_denied"]
    assert query["iss"] == [d.provider_url]
    assert rp_app.state.rp.sessions == {}
    shot(page, "cancelled")


def test_tampered_state_is_rejected_by_the_relying_party(running: tuple[Deployment, Any], page: Page) -> None:
    d, rp_app = running
    shot = Shots("tampered-state")
    to_provider_login(page, d)
    log_in(page)
    page.wait_for_url(re.compile(re.escape(f"{d.provider_url}/consent?")))
    # Hold the provider's redirect back to the RP, so the response can be altered first:
    # the consent POST goes to the provider for real, its 303 is kept and not followed.
    held: list[str] = []

    def hold(route: Any) -> None:
        response = route.fetch(max_redirects=0)
        held.append(response.headers["location"])
        route.fulfill(status=200, content_type="text/plain", body="held by the test")

    page.route(f"{d.provider_url}/consent", hold)
    page.click("#allow")
    page.wait_for_selector("text=held by the test")
    page.unroute(f"{d.provider_url}/consent")
    (genuine,) = held
    parts = urlsplit(genuine)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert set(query) == {"code", "state", "iss"}
    tampered = urlunsplit(parts._replace(query=urlencode({**query, "state": query["state"][:-2] + "xx"})))

    page.goto(tampered)
    assert page.inner_text("#error-title") == "Sign-in rejected"
    assert page.inner_text("#error-message") == "State mismatch."
    assert rp_app.state.rp.sessions == {}
    shot(page, "state-rejected")

    # The genuine response still completes the sign-in: the tampered one changed nothing.
    page.goto(genuine)
    page.wait_for_url(f"{d.rp_url}/")
    assert page.inner_text("#greeting") == "Hello, Alice Liddell"
    shot(page, "genuine-response")

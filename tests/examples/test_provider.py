"""The example provider through HTTP (httpx over ASGI, the real app with a real SQLite store):
authorization-request validation, login, consent, the code redirect, UserInfo and logout."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet

from attesto_asgi import AttestoMiddleware
from examples.provider import ProviderSettings, create_app
from examples.provider.settings import demo_clients
from tests.examples.support import ALICE, ALICE_SUB, KEYS, form_fields, provider_store, public_client

ISSUER = "http://127.0.0.1:8000"
RP = "http://127.0.0.1:8001"
API = "http://127.0.0.1:8002"
CALLBACK = f"{RP}/callback"
RP_SECRET = "rp-secret-" + "x" * 40
NARROW_CALLBACK = "http://127.0.0.1:8100/cb"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[AttestoMiddleware]:
    clients = (
        *demo_clients(rp_url=RP, rp_secret=RP_SECRET, api_url=API, api_secret="api-secret-" + "y" * 40),
        public_client("narrow", NARROW_CALLBACK, scope=("openid", "profile")),
        public_client("no-openid", NARROW_CALLBACK, scope=("profile",)),
    )
    app = create_app(ProviderSettings(issuer=ISSUER, store=provider_store(tmp_path), clients=clients, keys=KEYS))
    yield app
    await app.config.backend.aclose()  # what the app's lifespan does under a server


@pytest.fixture
async def browser(app: AttestoMiddleware) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client that does not follow redirects (each hop is asserted)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as c:
        yield c


def authorize_params(challenge: str, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": "demo-rp",
        "redirect_uri": CALLBACK,
        "scope": "openid profile email offline_access",
        "state": "st-" + secrets.token_urlsafe(8),
        "nonce": "n-" + secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def login(browser: httpx.AsyncClient, location: str, password: str = ALICE[1]) -> httpx.Response:
    """From a redirect to /login: fetch the form and post the credentials."""
    page = await browser.get(location)
    assert page.status_code == 200
    fields = form_fields(page.text, "/login")
    fields.update(username=ALICE[0], password=password)
    return await browser.post("/login", data=fields)


async def consent(browser: httpx.AsyncClient, location: str, decision: str = "allow") -> httpx.Response:
    page = await browser.get(location)
    assert page.status_code == 200, page.text
    fields = form_fields(page.text, "/consent")
    return await browser.post("/consent", data={**fields, "decision": decision})


async def sign_in(browser: httpx.AsyncClient, params: dict[str, str]) -> dict[str, str]:
    """Authorize -> login -> consent; the query of the redirect back to the client."""
    r = await browser.get("/authorize", params=params)
    assert r.status_code == 303, r.text
    if r.headers["location"].startswith("/login"):
        r = await login(browser, r.headers["location"])
        assert r.status_code == 303
    if r.headers["location"].startswith("/consent"):
        r = await consent(browser, r.headers["location"])
    assert r.status_code == 303
    assert r.headers["location"].startswith(params["redirect_uri"] + "?")
    return query(r.headers["location"])


async def redeem(browser: httpx.AsyncClient, code: str, verifier: str) -> httpx.Response:
    return await browser.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "code_verifier": verifier},
        auth=("demo-rp", RP_SECRET),
    )


# ---------------------------------------------------------------- errors shown, never redirected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client_id": None}, "The client is unknown."),
        ({"client_id": "nobody"}, "The client is unknown."),
        ({"redirect_uri": "http://127.0.0.1:6666/callback"}, "not registered"),
        ({"redirect_uri": CALLBACK + "/"}, "not registered"),  # exact string comparison
        ({"redirect_uri": CALLBACK.upper()}, "not registered"),
        ({"redirect_uri": CALLBACK + "?x=1"}, "not registered"),
        ({"redirect_uri": None}, "redirect_uri parameter is missing"),  # OIDC: required
    ],
)
async def test_bad_client_or_redirect_uri_is_an_error_page(
    browser: httpx.AsyncClient, change: dict[str, str | None], message: str
) -> None:
    # RFC 6749 §4.1.2.1: MUST NOT automatically redirect the user-agent to the invalid URI.
    r = await browser.get("/authorize", params=authorize_params(pkce()[1], **change))
    assert r.status_code == 400
    assert "location" not in r.headers
    assert message in r.text
    assert r.headers["x-frame-options"] == "DENY"


async def test_duplicate_redirect_uri_is_an_error_page(browser: httpx.AsyncClient) -> None:
    params = urlencode(authorize_params(pkce()[1])) + "&" + urlencode({"redirect_uri": CALLBACK})
    r = await browser.get(f"/authorize?{params}")
    assert r.status_code == 400
    assert "location" not in r.headers


# ---------------------------------------------------------------- errors redirected with state and iss


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"response_type": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),  # defaults to plain: refused
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"scope": 'openid "quoted"'}, "invalid_scope"),
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
        ({"request_uri": "urn:example:1"}, "request_uri_not_supported"),
        ({"response_mode": "fragment"}, "invalid_request"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"prompt": "sometimes"}, "invalid_request"),
        ({"max_age": "-1"}, "invalid_request"),
        ({"claims": "[1, 2]"}, "invalid_request"),
        ({"resource": "http://127.0.0.1:9999/other"}, "invalid_target"),
        ({"nonce": "n" * 2000}, "invalid_request"),
    ],
)
async def test_bad_request_is_redirected_with_error_state_and_iss(
    browser: httpx.AsyncClient, change: dict[str, str | None], error: str
) -> None:
    params = authorize_params(pkce()[1], **change)
    r = await browser.get("/authorize", params=params)
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith(CALLBACK + "?")
    q = query(location)
    assert q["error"] == error
    assert q["state"] == params["state"]
    assert q["iss"] == ISSUER  # RFC 9207 §2
    assert "code" not in q


async def test_missing_state_is_refused(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/authorize", params=authorize_params(pkce()[1], state=None))
    q = query(r.headers["location"])
    assert q["error"] == "invalid_request"
    assert "state" not in q


async def test_repeated_parameter_is_refused(browser: httpx.AsyncClient) -> None:
    params = authorize_params(pkce()[1])
    r = await browser.get(f"/authorize?{urlencode(params)}&scope=openid")
    q = query(r.headers["location"])
    assert q["error"] == "invalid_request"
    assert q["state"] == params["state"]


async def test_client_without_the_code_grant_is_unauthorized(browser: httpx.AsyncClient) -> None:
    r = await browser.get(
        "/authorize", params=authorize_params(pkce()[1], client_id="reports-cli", redirect_uri=None, scope="openid")
    )
    # reports-cli has no redirect URI at all, so this is an error page, never a redirect.
    assert r.status_code == 400
    assert "location" not in r.headers


async def test_prompt_none_without_a_session_is_login_required(browser: httpx.AsyncClient) -> None:
    params = authorize_params(pkce()[1], prompt="none")
    q = query((await browser.get("/authorize", params=params)).headers["location"])
    assert q["error"] == "login_required"
    assert q["state"] == params["state"]


# ---------------------------------------------------------------- the flow


async def test_full_flow_code_tokens_id_token_and_userinfo(browser: httpx.AsyncClient) -> None:
    verifier, challenge = pkce()
    params = authorize_params(challenge)
    r = await browser.get("/authorize", params=params)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login?authz=")
    r = await login(browser, r.headers["location"])
    assert r.status_code == 303
    assert r.headers["location"].startswith("/consent?authz=")
    page = await browser.get(r.headers["location"])
    assert "Example Relying Party" in page.text
    for text in ("See your name", "See your email", "Stay signed in"):
        assert text in page.text
    assert page.headers["cache-control"] == "no-store"
    r = await browser.post("/consent", data={**form_fields(page.text, "/consent"), "decision": "allow"})
    assert r.status_code == 303
    q = query(r.headers["location"])
    assert set(q) == {"code", "state", "iss"}
    assert q["state"] == params["state"]
    assert q["iss"] == ISSUER

    tokens = await redeem(browser, q["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["scope"].split() == ["openid", "profile", "email", "offline_access"]
    assert "refresh_token" in body  # offline_access was consented to
    jwks = JoseKeySet.import_key_set((await browser.get("/.well-known/jwks.json")).json())
    id_claims = jwt.decode(body["id_token"], jwks).claims
    assert id_claims["iss"] == ISSUER
    assert id_claims["aud"] == "demo-rp"
    assert id_claims["sub"] == ALICE_SUB
    assert id_claims["nonce"] == params["nonce"]
    assert id_claims["amr"] == ["pwd"]
    assert id_claims["name"] == "Alice Liddell"
    assert id_claims["email"] == "alice@example.org"
    assert isinstance(id_claims["auth_time"], int)
    assert isinstance(id_claims["sid"], str)
    at_claims = jwt.decode(body["access_token"], jwks).claims
    assert at_claims["aud"] == ISSUER  # the default audience: this provider's UserInfo

    info = await browser.get("/userinfo", headers={"authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    assert info.headers["cache-control"] == "no-store"
    assert info.json() == {
        "sub": ALICE_SUB,
        "name": "Alice Liddell",
        "preferred_username": "alice",
        "email": "alice@example.org",
        "email_verified": True,
    }
    posted = await browser.post("/userinfo", headers={"authorization": f"Bearer {body['access_token']}"})
    assert posted.json()["sub"] == ALICE_SUB

    refreshed = await browser.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=("demo-rp", RP_SECRET),
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != body["refresh_token"]


async def test_wrong_password_shows_the_login_page_again(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/authorize", params=authorize_params(pkce()[1]))
    r = await login(browser, r.headers["location"], password="not-her-password")
    assert r.status_code == 200
    assert "Wrong username or password." in r.text
    assert 'value="alice"' in r.text  # the username is kept, the password is not
    assert "not-her-password" not in r.text
    # Nothing was signed in: the consent page sends us back to login.
    authz = form_fields(r.text, "/login")["authz"]
    assert (await browser.get(f"/consent?authz={authz}")).headers["location"].startswith("/login")


async def test_denied_consent_redirects_access_denied(browser: httpx.AsyncClient) -> None:
    params = authorize_params(pkce()[1])
    r = await browser.get("/authorize", params=params)
    r = await login(browser, r.headers["location"])
    r = await consent(browser, r.headers["location"], decision="deny")
    q = query(r.headers["location"])
    assert q["error"] == "access_denied"
    assert q["state"] == params["state"]
    assert q["iss"] == ISSUER
    assert "code" not in q


async def test_forms_need_the_csrf_token(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/authorize", params=authorize_params(pkce()[1]))
    page = await browser.get(r.headers["location"])
    fields = form_fields(page.text, "/login")
    fields.update(username=ALICE[0], password=ALICE[1], csrf="forged")
    r = await browser.post("/login", data=fields)
    assert r.status_code == 400
    assert "Session expired" in r.text


async def test_a_consent_decision_is_single_use(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/authorize", params=authorize_params(pkce()[1]))
    r = await login(browser, r.headers["location"])
    page = await browser.get(r.headers["location"])
    fields = {**form_fields(page.text, "/consent"), "decision": "allow"}
    assert (await browser.post("/consent", data=fields)).status_code == 303
    again = await browser.post("/consent", data=fields)
    assert again.status_code == 400
    assert "Request expired" in again.text


async def test_consent_is_remembered_except_for_offline_access(browser: httpx.AsyncClient) -> None:
    await sign_in(browser, authorize_params(pkce()[1]))
    # Same client, no offline_access: straight back with a code (no page at all).
    params = authorize_params(pkce()[1], scope="openid profile")
    r = await browser.get("/authorize", params=params)
    assert r.headers["location"].startswith(CALLBACK + "?")
    assert "code" in query(r.headers["location"])
    # prompt=none works now too.
    r = await browser.get("/authorize", params=authorize_params(pkce()[1], scope="openid email", prompt="none"))
    assert "code" in query(r.headers["location"])
    # offline_access is asked for every time (OIDC Core §11).
    r = await browser.get("/authorize", params=authorize_params(pkce()[1]))
    assert r.headers["location"].startswith("/consent")
    r = await browser.get("/authorize", params=authorize_params(pkce()[1], prompt="none"))
    assert query(r.headers["location"])["error"] == "consent_required"
    # prompt=login forces a new login even with a session.
    r = await browser.get("/authorize", params=authorize_params(pkce()[1], scope="openid", prompt="login"))
    assert r.headers["location"].startswith("/login")


# ---------------------------------------------------------------- UserInfo errors


async def public_flow_token(browser: httpx.AsyncClient, client_id: str, scope: str) -> dict[str, Any]:
    verifier, challenge = pkce()
    params = authorize_params(challenge, client_id=client_id, redirect_uri=NARROW_CALLBACK, scope=scope)
    q = await sign_in(browser, params)
    r = await browser.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": q["code"],
            "redirect_uri": NARROW_CALLBACK,
            "code_verifier": verifier,
            "client_id": client_id,
        },
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_userinfo_errors_follow_rfc_6750(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/userinfo")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="userinfo"'  # §3.1: no error code
    r = await browser.get("/userinfo", headers={"authorization": "Bearer not.a.token"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    # An access token without openid scope cannot read UserInfo.
    token = (await public_flow_token(browser, "no-openid", "profile"))["access_token"]
    r = await browser.get("/userinfo", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    # A token for another audience (the API) is refused here.
    svc = await browser.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "resource": API},
        auth=("reports-cli", "api-secret-" + "y" * 40),
    )
    assert svc.status_code == 200, svc.text
    r = await browser.get("/userinfo", headers={"authorization": f"Bearer {svc.json()['access_token']}"})
    assert r.status_code == 401


async def test_userinfo_claims_follow_the_granted_scope(browser: httpx.AsyncClient) -> None:
    token = (await public_flow_token(browser, "narrow", "openid"))["access_token"]
    r = await browser.get("/userinfo", headers={"authorization": f"Bearer {token}"})
    assert r.json() == {"sub": ALICE_SUB}


async def test_userinfo_refuses_tokens_of_a_revoked_family(browser: httpx.AsyncClient) -> None:
    verifier, challenge = pkce()
    q = await sign_in(browser, authorize_params(challenge))
    first = await redeem(browser, q["code"], verifier)
    token = first.json()["access_token"]
    assert (await browser.get("/userinfo", headers={"authorization": f"Bearer {token}"})).status_code == 200
    # Code reuse revokes the family (RFC 9700 §4.13): its access tokens stop working here.
    assert (await redeem(browser, q["code"], verifier)).json()["error"] == "invalid_grant"
    assert (await browser.get("/userinfo", headers={"authorization": f"Bearer {token}"})).status_code == 401


# ---------------------------------------------------------------- discovery and logout


async def test_discovery_names_the_hosts_endpoints(browser: httpx.AsyncClient) -> None:
    doc = (await browser.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == ISSUER
    assert doc["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert doc["userinfo_endpoint"] == f"{ISSUER}/userinfo"
    assert doc["end_session_endpoint"] == f"{ISSUER}/logout"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True


async def test_rp_initiated_logout(browser: httpx.AsyncClient) -> None:
    verifier, challenge = pkce()
    id_token = (await redeem(browser, (await sign_in(browser, authorize_params(challenge)))["code"], verifier)).json()[
        "id_token"
    ]
    # An unregistered return address is an error page, and the session survives it.
    r = await browser.get(
        "/logout", params={"id_token_hint": id_token, "post_logout_redirect_uri": "http://127.0.0.1:6666/"}
    )
    assert r.status_code == 400
    assert "Signed in as Alice Liddell" in (await browser.get("/")).text
    r = await browser.get(
        "/logout",
        params={"id_token_hint": id_token, "post_logout_redirect_uri": f"{RP}/logged-out", "state": "bye"},
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"{RP}/logged-out?state=bye"
    # Signed out: a new authorization request needs a login again.
    r = await browser.get("/authorize", params=authorize_params(pkce()[1], scope="openid"))
    assert r.headers["location"].startswith("/login")


async def test_logout_without_a_hint_asks_first(browser: httpx.AsyncClient) -> None:
    await sign_in(browser, authorize_params(pkce()[1]))
    page = await browser.get("/logout", params={"client_id": "demo-rp", "post_logout_redirect_uri": f"{RP}/logged-out"})
    assert page.status_code == 200
    assert "Signed in as Alice Liddell" in (await browser.get("/")).text  # nothing happened yet
    r = await browser.post("/logout", data=form_fields(page.text, "/logout"))
    assert r.headers["location"].startswith(f"{RP}/logged-out")
    assert "Signed in as" not in (await browser.get("/")).text


def test_settings_from_env_default_to_sqlite_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ATTESTO_STORE", raising=False)
    monkeypatch.setenv("DEMO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PROVIDER_PORT", "8123")
    settings = ProviderSettings.from_env()
    assert settings.issuer == "http://127.0.0.1:8123"
    assert settings.store == f"sqlite:///{tmp_path / 'data' / 'provider.db'}"
    keyfile = tmp_path / "data" / "provider-keys.json"
    assert keyfile.stat().st_mode & 0o777 == 0o600
    # The same keys come back on the next start (tokens stay verifiable across restarts).
    again = ProviderSettings.from_env()
    assert [k.kid for k in again.keys] == [k.kid for k in settings.keys]
    assert "DEMO_RP_SECRET not set" in capsys.readouterr().out
    monkeypatch.setenv("ATTESTO_STORE", "redis://127.0.0.1:6379/0")
    assert ProviderSettings.from_env().store == "redis://127.0.0.1:6379/0"


async def test_pending_requests_keep_the_session_cookie_small(browser: httpx.AsyncClient) -> None:
    locations = []
    for _ in range(8):
        params = authorize_params(pkce()[1], state="s" * 500, nonce="n" * 500)
        locations.append((await browser.get("/authorize", params=params)).headers["location"])
        cookie = browser.cookies.get("op_session")
        assert cookie is not None
        assert len(cookie) < 4096  # browsers drop larger cookies
    # The newest request survives and completes; the oldest gave way.
    r = await login(browser, locations[-1])
    assert r.headers["location"].startswith("/consent")
    authz = locations[0].split("authz=")[1]
    assert "Request expired" in (await browser.get(f"/consent?authz={authz}")).text

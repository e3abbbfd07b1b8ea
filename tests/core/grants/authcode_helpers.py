"""Helpers for the authorization_code tests: clients, PKCE values, issuing and redeeming codes."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

import httpx

from attesto_asgi import Client, Config, Event, Hooks, issue_code
from tests.helpers import FakeClock, standard_clients

# RFC 7636 Appendix B: the worked example.
RFC7636_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC7636_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

SPA_REDIRECT = "http://localhost:3000/cb"
WEB_REDIRECT = "https://app.example.com/cb"
WEB_SECRET = "web-secret-0123456789abcdefghijklmnopqrstuvwxyz"
LEGACY_SECRET = "legacy-secret-0123456789abcdefghijklmnopqrstuvwxyz"
API = "https://api.example.com"
BILLING = "https://billing.example.com"


def authcode_clients() -> tuple[Client, ...]:
    """The standard clients plus the ones these tests need."""
    return (
        *standard_clients(),
        # A second public client, to present another client's code.
        Client(
            client_id="spa2",
            token_endpoint_auth_method="none",
            grant_types=("authorization_code", "refresh_token"),
            redirect_uris=(SPA_REDIRECT,),
            scope=("openid", "profile", "offline_access"),
        ),
        # A confidential web app with OIDC, resources, and a registered ID-token algorithm.
        Client(
            client_id="web",
            client_secret=WEB_SECRET,
            grant_types=("authorization_code", "refresh_token"),
            redirect_uris=(WEB_REDIRECT, "https://app.example.com/other"),
            scope=("openid", "profile", "email", "offline_access", "read"),
            audiences=(API, BILLING, "https://reports.example.com"),
        ),
        # A confidential client registered without PKCE (require_pkce=False).
        Client(
            client_id="legacy",
            client_secret=LEGACY_SECRET,
            grant_types=("authorization_code",),
            redirect_uris=(WEB_REDIRECT,),
            scope=("openid", "read"),
            require_pkce=False,
        ),
        # A plain OAuth client (no OIDC) that may refresh.
        Client(
            client_id="oauth-app",
            token_endpoint_auth_method="none",
            grant_types=("authorization_code", "refresh_token"),
            redirect_uris=(SPA_REDIRECT,),
            scope=("read", "write"),
        ),
        # An OIDC client without the refresh_token grant.
        Client(
            client_id="norefresh",
            token_endpoint_auth_method="none",
            grant_types=("authorization_code",),
            redirect_uris=(SPA_REDIRECT,),
            scope=("openid", "offline_access"),
        ),
    )


def pkce_pair() -> tuple[str, str]:
    """A fresh (verifier, S256 challenge), computed here independently of the library."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class RecordingHooks(Hooks):
    """Default policy; keeps every emitted event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def on_event(self, event: Event) -> None:
        self.events.append(event)


def auth_time(clock: FakeClock) -> int:
    return int(clock.now) - 30


async def spa_code(
    config: Config,
    clock: FakeClock,
    *,
    client_id: str = "spa",
    scope: str = "openid offline_access",
    challenge: str = RFC7636_CHALLENGE,
    **extra: Any,
) -> str:
    return await issue_code(
        config,
        client_id=client_id,
        redirect_uri=SPA_REDIRECT,
        subject="alice",
        scope=scope,
        code_challenge=challenge,
        auth_time=auth_time(clock),
        **extra,
    )


async def redeem(
    http: httpx.AsyncClient,
    code: str,
    *,
    client_id: str = "spa",
    verifier: str | None = RFC7636_VERIFIER,
    redirect_uri: str | None = SPA_REDIRECT,
    auth: tuple[str, str] | None = None,
    **extra: str,
) -> httpx.Response:
    """A token request for ``code``; a public client sends client_id, a confidential one ``auth``."""
    data: dict[str, str] = {"grant_type": "authorization_code", "code": code, **extra}
    if auth is None:
        data["client_id"] = client_id
    if verifier is not None:
        data["code_verifier"] = verifier
    if redirect_uri is not None:
        data["redirect_uri"] = redirect_uri
    return await http.post("/oauth/token", data=data, auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT)


def names(events: list[Event]) -> list[str]:
    return [e.name for e in events]

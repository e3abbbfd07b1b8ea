"""A relying party that signs users in against the example provider with authlib's
Starlette client: discovery, PKCE (S256), state, nonce and ID-token validation are
authlib's; this app adds the RFC 9207 ``iss`` check, error pages, refresh and logout.

Tokens stay on the server (an in-memory dict keyed by a random id in the signed session
cookie): the browser never holds an access or refresh token, and a cookie stays small.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.integrations.starlette_client import OAuth
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

__all__ = ["RPSettings", "create_app"]

log = logging.getLogger("examples.relying_party")

HERE = Path(__file__).resolve().parent
SESSION_COOKIE: Final = "rp_session"  # distinct from the provider's: cookies ignore the port
SCOPE: Final = "openid profile email offline_access"
PAGE_HEADERS: Final = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    # The callback URL carries the code: never send it on in a Referer.
    "referrer-policy": "no-referrer",
}


@dataclass(frozen=True, kw_only=True)
class RPSettings:
    base_url: str  # where this app is served, e.g. http://127.0.0.1:8001
    issuer: str  # the provider
    client_id: str
    client_secret: str = field(repr=False)
    session_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)


@dataclass
class SignedIn:
    """What the RP keeps for one signed-in browser."""

    token: dict[str, Any]
    id_token: str  # as validated at sign-in; the logout hint (a refresh may not return one)
    id_claims: dict[str, Any]
    userinfo: dict[str, Any]
    refreshed_at: float | None = None
    refresh_count: int = 0


class RelyingParty:
    def __init__(self, settings: RPSettings) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.issuer = settings.issuer.rstrip("/")
        self.oauth = OAuth()
        self.oauth.register(
            name="provider",
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            server_metadata_url=f"{self.issuer}/.well-known/openid-configuration",
            client_kwargs={"scope": SCOPE, "code_challenge_method": "S256"},
        )
        self.client = self.oauth.create_client("provider")
        self.sessions: dict[str, SignedIn] = {}
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context["csrf"] = csrf_token(request)
        response = self.templates.TemplateResponse(request, name, context, status_code=status)
        response.headers.update(PAGE_HEADERS)
        return response

    def signed_in(self, request: Request) -> SignedIn | None:
        return self.sessions.get(request.session.get("sid", ""))

    async def home(self, request: Request) -> Response:
        current = self.signed_in(request)
        if current is None:
            return self.page(request, "home.html")
        token = current.token
        return self.page(
            request,
            "signed_in.html",
            me=current,
            expires_in=int(token.get("expires_at", 0) - time.time()),
            has_refresh_token="refresh_token" in token,
            granted_scope=token.get("scope", ""),
        )

    async def login(self, request: Request) -> Response:
        # authlib makes state, nonce and the PKCE verifier and keeps them in the session.
        response: Response = await self.client.authorize_redirect(request, f"{self.base_url}/callback")
        return response

    async def callback(self, request: Request) -> Response:
        metadata = await self.client.load_server_metadata()
        # RFC 9207 §2.4: the provider advertises iss; a response without it, or from
        # another issuer, is rejected (mix-up attack defence).
        if request.query_params.get("iss") != metadata["issuer"]:
            return self.page(request, "error.html", 400, title="Sign-in rejected", message="Wrong or missing issuer.")
        error = request.query_params.get("error")
        if error is not None:
            # An error response must answer our own request too (RFC 6749 §10.12).
            state = request.query_params.get("state", "")
            known = await self.client.framework.get_state_data(request.session, state)
            await self.client.framework.clear_state_data(request.session, state)
            if not known:
                return self.page(request, "error.html", 400, title="Sign-in rejected", message="Unknown state.")
            if error == "access_denied":
                return self.page(request, "denied.html", 403)
            return self.page(request, "error.html", 400, title="Sign-in failed", message=f"The provider said: {error}")
        try:
            token = await self.client.authorize_access_token(request)
        except MismatchingStateError:
            # The state in the URL is not one this browser's session started (CSRF, RFC 6749 §10.12).
            return self.page(request, "error.html", 400, title="Sign-in rejected", message="State mismatch.")
        except OAuthError as exc:
            log.warning("token exchange failed: %s", exc.error)
            return self.page(request, "error.html", 400, title="Sign-in failed", message=str(exc.error))
        claims = dict(token.pop("userinfo", {}) or {})
        if "id_token" not in token or not claims:  # we asked for openid: no ID token, no sign-in
            return self.page(request, "error.html", 400, title="Sign-in failed", message="No ID token.")
        userinfo = dict(await self.client.userinfo(token=token))
        if userinfo.get("sub") != claims.get("sub"):  # OIDC Core §5.3.2: the sub MUST match
            return self.page(request, "error.html", 400, title="Sign-in failed", message="UserInfo sub mismatch.")
        sid = secrets.token_urlsafe(24)
        self.sessions[sid] = SignedIn(
            token=dict(token), id_token=token["id_token"], id_claims=claims, userinfo=userinfo
        )
        request.session.clear()
        request.session["sid"] = sid
        return RedirectResponse("/", status_code=303)

    async def refresh(self, request: Request) -> Response:
        current = self.signed_in(request)
        form = await request.form()
        if current is None or not csrf_ok(request, form.get("csrf")):
            return RedirectResponse("/", status_code=303)
        refresh_token = current.token.get("refresh_token")
        if not refresh_token:
            return self.page(request, "error.html", 400, title="Cannot refresh", message="No refresh token.")
        try:
            token = await self.client.fetch_access_token(grant_type="refresh_token", refresh_token=refresh_token)
        except OAuthError as exc:
            # invalid_grant: the family was revoked (or the token reused): sign in again.
            self.sessions.pop(request.session.pop("sid", ""), None)
            return self.page(request, "error.html", 400, title="Session ended", message=str(exc.error))
        # OIDC Core §12.2: a refresh response may carry a new ID token; this app keeps showing
        # (and uses as its logout hint) the one validated at sign-in.
        current.token = dict(token)
        current.userinfo = dict(await self.client.userinfo(token=token))
        current.refreshed_at = time.time()
        current.refresh_count += 1
        return RedirectResponse("/", status_code=303)

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        current = self.signed_in(request)
        if current is None or not csrf_ok(request, form.get("csrf")):
            return RedirectResponse("/", status_code=303)
        self.sessions.pop(request.session.pop("sid", ""), None)
        metadata = await self.client.load_server_metadata()
        if "revocation_endpoint" in metadata and "refresh_token" in current.token:
            await self.revoke(metadata["revocation_endpoint"], current.token["refresh_token"])
        # OpenID Connect RP-Initiated Logout: end the provider's session too, then come back.
        response: Response = await self.client.logout_redirect(
            request,
            post_logout_redirect_uri=f"{self.base_url}/logged-out",
            id_token_hint=current.id_token,
        )
        return response

    async def revoke(self, endpoint: str, refresh_token: str) -> None:
        """RFC 7009: revoking the refresh token ends its whole family at the provider."""
        try:
            async with AsyncOAuth2Client(self.settings.client_id, self.settings.client_secret) as http:
                await http.revoke_token(endpoint, token=refresh_token, token_type_hint="refresh_token")
        except Exception:  # signing out locally must not depend on the provider being up
            log.warning("refresh token revocation failed", exc_info=True)

    async def logged_out(self, request: Request) -> Response:
        try:
            await self.client.validate_logout_response(request)
        except OAuthError:
            return self.page(request, "error.html", 400, title="Sign-out", message="Unknown sign-out response.")
        return self.page(request, "logged_out.html")


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


def csrf_ok(request: Request, value: object) -> bool:
    expected = request.session.get("csrf")
    return isinstance(value, str) and isinstance(expected, str) and hmac.compare_digest(value, expected)


def create_app(settings: RPSettings) -> Starlette:
    rp = RelyingParty(settings)
    app = Starlette(
        routes=[
            Route("/", rp.home),
            Route("/login", rp.login),
            Route("/callback", rp.callback),
            Route("/refresh", rp.refresh, methods=["POST"]),
            Route("/logout", rp.logout, methods=["POST"]),
            Route("/logged-out", rp.logged_out),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=settings.session_secret,
                session_cookie=SESSION_COOKIE,
                same_site="lax",
                https_only=settings.base_url.startswith("https://"),
            )
        ],
    )
    app.state.rp = rp
    return app

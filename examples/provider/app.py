"""A complete OpenID Provider: Starlette pages in front, ``AttestoMiddleware`` around them.

The middleware serves the token endpoint, discovery and JWKS; this module is everything a
host adds: the authorization endpoint (request validation in ``authorize.py``), login,
consent, UserInfo and RP-initiated logout. After login and consent it calls
``issue_code`` and redirects back with ``code``, ``state`` and ``iss`` (RFC 9207).

Sessions are signed cookies (Starlette's ``SessionMiddleware``, itsdangerous): they hold
the signed-in user, CSRF token, pending authorization requests and remembered consents.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import msgspec
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet as JoseKeySet
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from attesto_asgi import (
    AttestoMiddleware,
    Client,
    Config,
    Hooks,
    InvalidToken,
    OAuthError,
    StoreUnavailable,
    issue_code,
    verify_access_token,
)

from .authorize import AuthorizationError, AuthorizationRequest, authorization_response, validate, with_query
from .settings import HERE, ProviderSettings
from .users import User, UserDirectory

__all__ = ["ProviderHooks", "create_app"]

log = logging.getLogger("examples.provider")

SESSION_COOKIE: Final = "op_session"  # distinct from the RP's: cookies ignore the port
PENDING_TTL: Final = 600  # seconds an authorization request may wait for login and consent
MAX_PENDING: Final = 4  # the session is a cookie: keep it small
MAX_SESSION_BYTES: Final = 3500  # the encoded session, leaving room for the signature and attributes
SCOPE_TEXT: Final = {
    "openid": "Sign you in with your account",
    "profile": "See your name and username",
    "email": "See your email address",
    "offline_access": "Stay signed in when you are away (refresh tokens)",
    "reports:read": "Read your reports",
}
# Every HTML page: no framing (clickjacking), no caching, no Referer carrying request data.
PAGE_HEADERS: Final = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


class ProviderHooks(Hooks):
    """Host policy: claims come from the user directory; a removed user is inactive."""

    def __init__(self, users: UserDirectory) -> None:
        self.users = users

    async def id_token_claims(
        self,
        client: Client,
        subject: str,
        scope: tuple[str, ...],
        requested_claims: Mapping[str, Any] | None,
    ) -> Mapping[str, Any]:
        user = self.users.by_sub(subject)
        if user is None:
            return {}
        # OIDC Core §5.4 scope claims, and §5.5 claims named in the request's id_token member.
        available = user.claims(("profile", "email"))
        out = user.claims(scope)
        for name in requested_claims or {}:
            if name in available:
                out[name] = available[name]
        out.pop("sub", None)
        return out

    async def subject_active(self, subject: str) -> bool:
        return self.users.by_sub(subject) is not None


class Provider:
    """The host's endpoints. One instance per app; everything is prepared here once."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self.users = UserDirectory.load(settings.users_file)
        self.registered = {rc.client.client_id: rc for rc in settings.clients}
        issuer = settings.issuer.rstrip("/")
        self.config = Config(
            issuer=issuer,
            keys=settings.keys,
            store=settings.store,
            clients=tuple(rc.client for rc in settings.clients),
            hooks=ProviderHooks(self.users),
            # Access tokens without a resource indicator are for this provider's UserInfo.
            default_audience=issuer,
            authorization_endpoint=f"{issuer}/authorize",
            userinfo_endpoint=f"{issuer}/userinfo",
            secret_key=settings.secret_key,
            refresh_grace=settings.refresh_grace,
            extra_metadata={
                "end_session_endpoint": f"{issuer}/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "auth_time",
                    "nonce",
                    "amr",
                    "azp",
                    "sid",
                    "name",
                    "preferred_username",
                    "email",
                    "email_verified",
                ],
                "claims_parameter_supported": True,
                "request_parameter_supported": False,
                "request_uri_parameter_supported": False,
                "prompt_values_supported": ["none", "login", "consent", "select_account"],
            },
        )
        self.issuer = issuer
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self._id_token_keys = JoseKeySet.import_key_set(settings.keys.public_jwks())  # type: ignore[arg-type]

    # ------------------------------------------------------------------ helpers
    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("signed_in", self.current_user(request))
        context["csrf"] = csrf_token(request)
        response = self.templates.TemplateResponse(request, name, context, status_code=status)
        response.headers.update(PAGE_HEADERS)
        return response

    def error_page(self, request: Request, title: str, message: str, status: int = 400) -> Response:
        return self.page(request, "error.html", status=status, title=title, message=message)

    def current_auth(self, request: Request) -> dict[str, Any] | None:
        auth = request.session.get("auth")
        if not isinstance(auth, dict) or self.users.by_sub(auth.get("sub", "")) is None:
            return None
        return auth

    def current_user(self, request: Request) -> User | None:
        auth = self.current_auth(request)
        return self.users.by_sub(auth["sub"]) if auth else None

    def redirect_to_client(self, uri: str, **params: str | None) -> Response:
        response = RedirectResponse(authorization_response(uri, self.issuer, **params), status_code=303)
        response.headers["cache-control"] = "no-store"
        return response

    # ------------------------------------------------------------------ authorization endpoint
    async def authorize(self, request: Request) -> Response:
        params: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            params.setdefault(key, []).append(value)
        try:
            req = await validate(self.config, params)
        except AuthorizationError as exc:
            if exc.redirect_uri is None:
                # RFC 6749 §4.1.2.1: never redirect to an unverified URI; tell the user.
                return self.error_page(request, "Invalid sign-in request", exc.description)
            return self.redirect_to_client(
                exc.redirect_uri, error=exc.error, error_description=exc.description, state=exc.state
            )
        auth = self.current_auth(request)
        needs_login = (
            auth is None
            or bool({"login", "select_account"} & set(req.prompt))
            or (req.max_age is not None and time.time() - auth["auth_time"] > req.max_age)
        )
        consented = auth is not None and self.consent_remembered(request, req)
        if "none" in req.prompt:
            # OIDC Core §3.1.2.6: with prompt=none the provider MUST NOT show any page.
            if auth is None or needs_login:
                return self.redirect_to_client(req.redirect_uri, error="login_required", state=req.state)
            if not consented:
                return self.redirect_to_client(req.redirect_uri, error="consent_required", state=req.state)
            return await self.finish(req, auth)
        if auth is not None and not needs_login and consented and "consent" not in req.prompt:
            return await self.finish(req, auth)
        pending_id = self.save_pending(request, req)
        if needs_login:
            return RedirectResponse(f"/login?authz={pending_id}", status_code=303)
        return RedirectResponse(f"/consent?authz={pending_id}", status_code=303)

    def save_pending(self, request: Request, req: AuthorizationRequest) -> str:
        now = time.time()
        pending = {k: v for k, v in request.session.get("pending", {}).items() if now - v["at"] < PENDING_TTL}
        while len(pending) >= MAX_PENDING:
            pending.pop(min(pending, key=lambda k: pending[k]["at"]))
        pending_id = secrets.token_urlsafe(12)
        pending[pending_id] = {"at": now, "req": msgspec.to_builtins(req)}
        # Browsers drop cookies over 4 KiB: the oldest pending requests give way first.
        while len(pending) > 1 and _cookie_bytes({**request.session, "pending": pending}) > MAX_SESSION_BYTES:
            pending.pop(min(pending, key=lambda k: pending[k]["at"]))
        request.session["pending"] = pending
        return pending_id

    def load_pending(self, request: Request, pending_id: str | None) -> AuthorizationRequest | None:
        entry = request.session.get("pending", {}).get(pending_id or "")
        if entry is None or time.time() - entry["at"] >= PENDING_TTL:
            return None
        return msgspec.convert(entry["req"], AuthorizationRequest)

    def drop_pending(self, request: Request, pending_id: str) -> None:
        pending = dict(request.session.get("pending", {}))
        pending.pop(pending_id, None)
        request.session["pending"] = pending

    def consent_remembered(self, request: Request, req: AuthorizationRequest) -> bool:
        # OIDC Core §11: offline access needs explicit consent every time it is asked for.
        if "offline_access" in req.scope:
            return False
        granted = request.session.get("consents", {}).get(req.client_id, [])
        return set(req.scope) <= set(granted)

    async def finish(self, req: AuthorizationRequest, auth: dict[str, Any]) -> Response:
        """Mint the code and send the user back to the client (RFC 6749 §4.1.2, RFC 9207)."""
        try:
            code = await issue_code(
                self.config,
                client_id=req.client_id,
                redirect_uri=req.redirect_uri,
                subject=auth["sub"],
                scope=req.scope,
                code_challenge=req.code_challenge,
                code_challenge_method=req.code_challenge_method,
                nonce=req.nonce,
                auth_time=int(auth["auth_time"]),
                amr=tuple(auth.get("amr", ("pwd",))),
                claims=req.claims,
                resource=req.resource,
                sid=auth["sid"],
            )
        except OAuthError as exc:
            log.warning("issue_code refused: %s (%s)", exc.error, exc.detail)
            return self.redirect_to_client(
                req.redirect_uri, error=exc.error, error_description=exc.description, state=req.state
            )
        except StoreUnavailable:
            log.warning("store unavailable while issuing a code")
            return self.redirect_to_client(req.redirect_uri, error="temporarily_unavailable", state=req.state)
        return self.redirect_to_client(req.redirect_uri, code=code, state=req.state)

    # ------------------------------------------------------------------ login
    async def login(self, request: Request) -> Response:
        pending_id = request.query_params.get("authz", "")
        req = self.load_pending(request, pending_id)
        if request.method == "GET":
            return self.page(
                request,
                "login.html",
                authz=pending_id if req else "",
                client=self.registered.get(req.client_id) if req else None,
                username=req.login_hint if req else "",
                error=None,
            )
        form = await request.form()
        if not csrf_ok(request, form.get("csrf")):
            return self.error_page(request, "Session expired", "Please start signing in again.")
        pending_id = str(form.get("authz", ""))
        req = self.load_pending(request, pending_id)
        username = str(form.get("username", ""))[:256]
        user = self.users.authenticate(username, str(form.get("password", ""))[:1024])
        if user is None:
            log.info("failed login for %r", username)
            return self.page(
                request,
                "login.html",
                authz=pending_id if req else "",
                client=self.registered.get(req.client_id) if req else None,
                username=username,
                error="Wrong username or password.",
            )
        # A fresh session: new session id (OIDC "sid"), new CSRF token, no earlier consents.
        pending = request.session.get("pending", {})
        request.session.clear()
        request.session.update(
            auth={"sub": user.sub, "auth_time": int(time.time()), "sid": secrets.token_urlsafe(16), "amr": ["pwd"]},
            pending=pending,
        )
        if req is None:
            return RedirectResponse("/", status_code=303)
        return RedirectResponse(f"/consent?authz={pending_id}", status_code=303)

    # ------------------------------------------------------------------ consent
    async def consent(self, request: Request) -> Response:
        if request.method == "GET":
            pending_id = request.query_params.get("authz", "")
            req = self.load_pending(request, pending_id)
            if req is None:
                return self.error_page(request, "Request expired", "Go back to the application and try again.")
            if self.current_auth(request) is None:
                return RedirectResponse(f"/login?authz={pending_id}", status_code=303)
            return self.page(
                request,
                "consent.html",
                authz=pending_id,
                client=self.registered[req.client_id],
                scopes=[(s, SCOPE_TEXT.get(s, s)) for s in req.scope],
            )
        form = await request.form()
        if not csrf_ok(request, form.get("csrf")):
            return self.error_page(request, "Session expired", "Please start signing in again.")
        pending_id = str(form.get("authz", ""))
        req = self.load_pending(request, pending_id)
        auth = self.current_auth(request)
        if req is None:
            return self.error_page(request, "Request expired", "Go back to the application and try again.")
        self.drop_pending(request, pending_id)  # one decision per request
        if auth is None:
            return self.error_page(request, "Not signed in", "Go back to the application and try again.")
        if form.get("decision") != "allow":
            # RFC 6749 §4.1.2.1 access_denied: the resource owner denied the request.
            return self.redirect_to_client(
                req.redirect_uri, error="access_denied", error_description="The user denied access.", state=req.state
            )
        consents = dict(request.session.get("consents", {}))
        consents[req.client_id] = sorted(set(consents.get(req.client_id, [])) | set(req.scope) - {"offline_access"})
        request.session["consents"] = consents
        return await self.finish(req, auth)

    # ------------------------------------------------------------------ UserInfo
    async def userinfo(self, request: Request) -> Response:
        """OIDC Core §5.3, with RFC 6750 errors."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            # RFC 6750 §3.1: no credentials: no error code in the challenge.
            return bearer_error(401, None)
        try:
            # RFC 9068 §4 checks, and the store's word on revocation (RFC 7009).
            verified = await verify_access_token(
                self.config, token.strip(), audience=self.issuer, store=self.config.backend
            )
        except InvalidToken as exc:
            log.info("userinfo: token rejected: %s", exc.reason)
            return bearer_error(401, "invalid_token")
        except StoreUnavailable:
            return Response(status_code=503, headers={"retry-after": "5", "cache-control": "no-store"})
        claims = verified.claims
        scope = tuple(str(claims.get("scope", "")).split())
        if "openid" not in scope:
            return bearer_error(403, "insufficient_scope", scope="openid")
        user = self.users.by_sub(str(claims["sub"]))
        if user is None:
            return bearer_error(401, "invalid_token")
        return JSONResponse(user.claims(scope), headers={"cache-control": "no-store", "pragma": "no-cache"})

    # ------------------------------------------------------------------ RP-initiated logout
    async def logout(self, request: Request) -> Response:
        """OpenID Connect RP-Initiated Logout 1.0 §2-§3."""
        if request.method == "POST":
            form = await request.form()
            if not csrf_ok(request, form.get("csrf")):
                return self.error_page(request, "Session expired", "Please try again.")
            params = {k: str(v) for k, v in form.items()}
        else:
            params = dict(request.query_params)
        hint = self.id_token_hint(params.get("id_token_hint"))
        client_id = hint.get("aud") if hint else params.get("client_id")
        rc = self.registered.get(client_id) if isinstance(client_id, str) else None
        target = params.get("post_logout_redirect_uri")
        # §3: the URI MUST exactly match one registered for the client.
        if target is not None and (rc is None or target not in rc.post_logout_redirect_uris):
            return self.error_page(request, "Invalid sign-out request", "The return address is not registered.")
        auth = self.current_auth(request)
        # §2: without a valid hint for the signed-in user, ask before signing out (logout CSRF).
        confirmed = request.method == "POST" or (hint is not None and (auth is None or hint["sub"] == auth["sub"]))
        if not confirmed:
            return self.page(request, "logout.html", params=params, client=rc)
        request.session.clear()
        if target is None:
            return self.page(request, "logged_out.html", signed_in=None)
        return RedirectResponse(with_query(target, state=params.get("state")), status_code=303)

    def id_token_hint(self, value: str | None) -> dict[str, Any] | None:
        """A hint we issued (signature, issuer). Expiry does not matter for a hint (§2)."""
        if not value or len(value) > 8192:
            return None
        try:
            token = jwt.decode(value, self._id_token_keys, algorithms=list(self.config.keys.algorithms))
        except (JoseError, ValueError):
            return None
        claims = dict(token.claims)
        if claims.get("iss") != self.issuer or not isinstance(claims.get("aud"), str) or "sub" not in claims:
            return None
        return claims

    async def home(self, request: Request) -> Response:
        return self.page(request, "home.html")


def _cookie_bytes(session: dict[str, Any]) -> int:
    """The size of the session as SessionMiddleware encodes it (base64 of JSON)."""
    return len(base64.b64encode(json.dumps(session).encode("utf-8")))


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


def csrf_ok(request: Request, value: object) -> bool:
    expected = request.session.get("csrf")
    return isinstance(value, str) and isinstance(expected, str) and hmac.compare_digest(value, expected)


def bearer_error(status: int, error: str | None, *, scope: str | None = None) -> Response:
    challenge = 'Bearer realm="userinfo"'
    if error:
        challenge += f', error="{error}"'
    if scope:
        challenge += f', scope="{scope}"'
    return Response(status_code=status, headers={"www-authenticate": challenge, "cache-control": "no-store"})


def create_app(settings: ProviderSettings) -> AttestoMiddleware:
    """The provider as one ASGI app. ``app.config`` is the library's ``Config``."""
    provider = Provider(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await provider.config.backend.aclose()

    site = Starlette(
        routes=[
            Route("/", provider.home),
            Route("/authorize", provider.authorize),
            Route("/login", provider.login, methods=["GET", "POST"]),
            Route("/consent", provider.consent, methods=["GET", "POST"]),
            Route("/userinfo", provider.userinfo, methods=["GET", "POST"]),
            Route("/logout", provider.logout, methods=["GET", "POST"]),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=settings.session_secret,
                session_cookie=SESSION_COOKIE,
                max_age=8 * 3600,
                same_site="lax",
                # Secure cookies need https; the example only ever runs on http://127.0.0.1.
                https_only=settings.issuer.startswith("https://"),
            )
        ],
        lifespan=lifespan,
    )
    return AttestoMiddleware(site, config=provider.config)

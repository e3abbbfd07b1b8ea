"""``AttestoMiddleware``: a pure-ASGI middleware serving the token, revocation and introspection
endpoints, discovery and JWKS.

Set-up (routes, metadata documents, client authenticator) happens once in ``__init__``;
``__call__`` does a dict lookup on the path and otherwise passes the request through
untouched, as it does every non-HTTP scope (lifespan, websocket).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Final
from urllib.parse import unquote_plus

import msgspec

from ..config import Config, is_loopback_host
from ..core.client_auth import Authenticated, ClientAuthenticator
from ..core.introspection import introspect
from ..core.issuer import as_oauth_error, issue, store_unavailable_error
from ..core.revocation import revoke
from ..errors import INVALID_REQUEST, OAuthError, StoreUnavailable
from ..events import TOKEN_DENIED, Event
from ..hooks import Hooks
from ..hooks import log as events_log
from ..model import Denied, Introspected, Issued, PresentedToken, Revoked, TokenRequest
from .discovery import metadata_documents
from .form import BodyTooLarge, ClientDisconnected, Form, parse_form, read_body
from .types import AnyASGIApp, Receive, Scope, Send

__all__ = ["AttestoMiddleware"]

log = logging.getLogger("attesto_asgi.asgi")

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]
Outcome = Issued | Introspected | Revoked | Denied
CoreCall = Callable[[Authenticated, Form], Awaitable[Outcome]]

_NO_STORE: Final[RawHeaders] = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
_JSON_NO_STORE: Final[RawHeaders] = [(b"content-type", b"application/json"), *_NO_STORE]
# RFC 6749 §2.3.1: credentials "MUST NOT be included in the request URI"; grant parameters and
# the token to revoke or introspect neither.
_FORBIDDEN_IN_QUERY: Final = frozenset(
    {
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "grant_type",
        "code",
        "code_verifier",
        "refresh_token",
        "subject_token",
        "actor_token",
        "password",
        "scope",
        "token",
    }
)
_FORM: Final = b"application/x-www-form-urlencoded"
_encode: Final = msgspec.json.encode  # a C static when compiled (_secrets.py)


class AttestoMiddleware:
    """Mount in front of any ASGI app: ``AttestoMiddleware(app, config=Config(...))``."""

    def __init__(self, app: AnyASGIApp, config: Config) -> None:
        self.app = app
        self.config = config
        self.authenticator = ClientAuthenticator(config)
        routes: dict[str, Handler] = {
            config.token_path: self._post_endpoint("token", self._token_call),
            config.revocation_path: self._post_endpoint("revocation", self._revocation_call),
            config.introspection_path: self._post_endpoint("introspection", self._introspection_call),
        }
        for path, document in metadata_documents(config).items():
            routes[path] = self._static(_encode(document))
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self.routes.get(scope["path"])
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.app(scope, receive, send)

    # ------------------------------------------------------------------ responses
    @staticmethod
    async def _send(send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": body})

    async def _send_error(self, send: Send, error: OAuthError) -> None:
        headers = [*_JSON_NO_STORE, *((k.encode(), v.encode()) for k, v in error.headers)]
        await self._send(send, error.status, _encode(error.body()), headers)

    def _static(self, body: bytes) -> Handler:
        headers: RawHeaders = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"public, max-age=300"),
            (b"access-control-allow-origin", b"*"),
        ]

        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            method = scope["method"]
            if method not in ("GET", "HEAD"):
                await self._send(send, 405, b"", [(b"allow", b"GET, HEAD")])
                return
            await self._send(send, 200, b"" if method == "HEAD" else body, headers)

        return handler

    async def _emit(self, events: Iterable[Event]) -> None:
        on_event = self.config.hooks.on_event
        # The default sink only logs at INFO: with that level off, handing it events is work
        # for nothing. Any other sink (an override, a bound function, one set on the hooks
        # after start-up: hooks.md, looked up at each call) gets every event.
        if getattr(on_event, "__func__", None) is Hooks.on_event and not events_log.isEnabledFor(logging.INFO):
            return
        for event in events:
            try:
                await on_event(event)
            except Exception:  # a failing sink is logged, never fails the request
                log.exception("hooks.on_event failed for %s", event.name)

    # ------------------------------------------------------------------ POST endpoints
    def _post_endpoint(self, endpoint: str, call: CoreCall) -> Handler:
        """A POST endpoint with the token endpoint's edge steps: HTTPS, strict form, client
        authentication (DESIGN §3, §8). ``call`` turns the authenticated form into the core
        call; it raises ``OAuthError`` for a missing parameter."""
        not_post = OAuthError(
            INVALID_REQUEST, f"The {endpoint} endpoint accepts POST only.", status=405, headers=(("allow", "POST"),)
        )
        # Edge denials of the token endpoint carry its grant context; the others name themselves.
        denial_data = {} if endpoint == "token" else {"endpoint": endpoint}

        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["method"] != "POST":
                await self._send_error(send, not_post)
                return
            try:
                outcome = await self._outcome(scope, receive, call, denial_data)
            except ClientDisconnected:
                return  # no complete request arrived: nothing was decided, no one to answer
            if isinstance(outcome, Denied):
                await self._send_error(send, outcome.error)
            elif isinstance(outcome, Revoked):
                # RFC 7009 §2.2: HTTP 200; the content of the response body is ignored.
                await self._send(send, 200, b"", _NO_STORE)
            else:
                await self._send(send, 200, _encode(outcome.body), _JSON_NO_STORE)
            await self._emit(outcome.events)

        return handler

    async def _outcome(self, scope: Scope, receive: Receive, call: CoreCall, denial_data: dict[str, str]) -> Outcome:
        authorization: str | None = None
        authorizations = 0
        host: str | None = None
        content_type = b""
        content_length: int | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                authorizations += 1
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = _declared_length(value)
            elif name == b"host":
                host = value.decode("latin-1")
        client_id: str | None = None
        try:
            self._https_required(scope, host)
            if authorizations > 1:
                # RFC 9110 §11.6.2: Authorization is one field value; two would be two sets of
                # credentials, and RFC 6749 §2.3 allows one authentication per request.
                raise OAuthError(INVALID_REQUEST, "Only one Authorization header may be sent.")
            self._form_content_type(content_type)
            self._no_parameters_in_query(scope)
            try:
                body = await read_body(receive, self.config.max_body_bytes, content_length)
            except BodyTooLarge:
                raise OAuthError(INVALID_REQUEST, "The request body is too large.", status=413) from None
            form = parse_form(body)
            client_id = form.params.get("client_id")
            authenticated = await self.authenticator.authenticate(authorization, form.params)
            client_id = authenticated.client.client_id
            pending = call(authenticated, form)
        except OAuthError as exc:
            return self._denied_at_edge(exc, client_id, denial_data)
        except StoreUnavailable as exc:  # the replay cache, during client authentication
            log.warning("store unavailable during client authentication: %s", exc)
            return self._denied_at_edge(store_unavailable_error(exc), client_id, denial_data)
        except ClientDisconnected:
            raise
        except Exception as exc:  # a host's load_client hook, a client's unreadable jwks: 500, logged
            return self._denied_at_edge(as_oauth_error(exc, "client authentication"), client_id, denial_data)
        return await pending

    def _token_call(self, authenticated: Authenticated, form: Form) -> Awaitable[Issued | Denied]:
        request = TokenRequest(
            client=authenticated.client,
            grant_type=_required(form, "grant_type"),
            params=form.params,
            resource=form.multi.get("resource", ()),
            audience=form.multi.get("audience", ()),
            auth_method=authenticated.method,
        )
        return issue(self.config, request)

    def _revocation_call(self, authenticated: Authenticated, form: Form) -> Awaitable[Revoked | Denied]:
        return revoke(self.config, _presented(authenticated, form))

    def _introspection_call(self, authenticated: Authenticated, form: Form) -> Awaitable[Introspected | Denied]:
        return introspect(self.config, _presented(authenticated, form))

    def _denied_at_edge(self, error: OAuthError, client_id: str | None, data: dict[str, str]) -> Denied:
        event = Event(
            name=TOKEN_DENIED,
            at=self.config.clock(),
            client_id=client_id,
            data={**data, "error": error.error, "reason": error.detail},
        )
        return Denied(error=error, events=(event,))

    def _https_required(self, scope: Scope, host: str | None) -> None:
        # RFC 6749 §3.2: the token endpoint "MUST" use TLS; a loopback host is exempt for development.
        # The host is the one the client addressed (Host header), so a proxy in front of a
        # loopback-bound server does not make plain HTTP acceptable.
        if not self.config.require_https or scope.get("scheme") == "https":
            return
        if host is None:
            server = scope.get("server")
            host = str(server[0]) if server else ""
        if is_loopback_host(_hostname(host)):
            return
        raise OAuthError(INVALID_REQUEST, "HTTPS is required.", detail="request over plain HTTP")

    @staticmethod
    def _form_content_type(content_type: bytes) -> None:
        # RFC 6749 §3.2: "using the application/x-www-form-urlencoded format".
        if content_type == _FORM:  # the usual header, as is
            return
        media = content_type.split(b";", 1)[0].strip().lower()
        if media != _FORM:
            raise OAuthError(INVALID_REQUEST, "The body must be application/x-www-form-urlencoded.")

    @staticmethod
    def _no_parameters_in_query(scope: Scope) -> None:
        query: bytes = scope.get("query_string", b"")
        if not query:
            return
        for pair in query.decode("latin-1").split("&"):
            if unquote_plus(pair.split("=", 1)[0]) in _FORBIDDEN_IN_QUERY:
                raise OAuthError(INVALID_REQUEST, "Credentials and grant parameters must be sent in the body.")


# Past any body limit: a Content-Length of more digits than this is refused as too large.
_MAX_LENGTH_DIGITS: Final = 18


def _declared_length(value: bytes) -> int | None:
    """A Content-Length value as a number (None if not one). A number too long to be a real
    length counts as 10**18, so it is refused as too large, never converted in full."""
    if not value.isdigit():
        return None
    digits = value.lstrip(b"0")
    return int(digits or b"0") if len(digits) <= _MAX_LENGTH_DIGITS else 10**_MAX_LENGTH_DIGITS


def _hostname(authority: str) -> str:
    """The host of a Host header value (``[::1]:8000`` -> ``::1``, ``localhost:80`` -> ``localhost``)."""
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def _required(form: Form, name: str) -> str:
    value = form.params.get(name)
    if value is None:
        raise OAuthError(INVALID_REQUEST, f"The {name} parameter is missing.")
    return value


def _presented(authenticated: Authenticated, form: Form) -> PresentedToken:
    # RFC 7009 §2.1 / RFC 7662 §2.1: token is REQUIRED; token_type_hint is OPTIONAL.
    return PresentedToken(
        client=authenticated.client,
        token=_required(form, "token"),
        token_type_hint=form.params.get("token_type_hint"),
    )

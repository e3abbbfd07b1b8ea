"""Validation of an authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OIDC Core §3.1.2.1).

``validate(config, params)`` returns an ``AuthorizationRequest`` or raises
``AuthorizationError``. Order matters (RFC 6749 §4.1.2.1): until the client and its
``redirect_uri`` are known good, an error is shown to the user and never redirected;
after that, errors go back to the client's ``redirect_uri`` with ``state`` and ``iss``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import msgspec

from attesto_asgi import Client, Config, OAuthError

__all__ = ["AuthorizationError", "AuthorizationRequest", "authorization_response", "validate", "with_query"]

# RFC 7636 §4.2: S256 challenge = BASE64URL(SHA256(verifier)): exactly 43 characters.
_S256_CHALLENGE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE: Final = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*")
_PROMPTS: Final = frozenset({"none", "login", "consent", "select_account"})
_MAX_PARAM: Final = 512  # bound on state, nonce and hints (they travel in the session cookie)
_MULTI_VALUED: Final = frozenset({"resource"})  # RFC 8707 §2


class AuthorizationError(Exception):
    """``redirect_uri`` None: show an error page (§4.1.2.1: MUST NOT redirect)."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        redirect_uri: str | None = None,
        state: str | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state


class AuthorizationRequest(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str
    code_challenge: str
    code_challenge_method: str = "S256"
    nonce: str | None = None
    prompt: tuple[str, ...] = ()
    max_age: int | None = None
    claims: dict[str, Any] | None = None
    resource: tuple[str, ...] = ()
    login_hint: str | None = None


def with_query(uri: str, **params: str | None) -> str:
    """RFC 6749 §3.1.2: the registered URI's own query component is retained."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{uri}{'&' if urlsplit(uri).query else '?'}{query}"


def authorization_response(redirect_uri: str, issuer: str, **params: str | None) -> str:
    """The redirect back to the client; RFC 9207 §2 adds ``iss`` to every response,
    success or error."""
    return with_query(redirect_uri, **params, iss=issuer)


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        # RFC 6749 §3.1: parameters MUST NOT be included more than once.
        raise ValueError(name)
    return values[0] or None  # §3.1: a parameter sent without a value is treated as omitted


async def _client(config: Config, params: dict[str, list[str]]) -> Client:
    try:
        client_id = _single(params, "client_id")
    except ValueError:
        raise AuthorizationError("invalid_request", "client_id was given more than once.") from None
    client = await config.hooks.load_client(config, client_id) if client_id else None
    if client is None:
        # §4.1.2.1: invalid client_id: inform the resource owner, do not redirect.
        raise AuthorizationError("invalid_request", "The client is unknown.")
    return client


def _redirect_uri(client: Client, params: dict[str, list[str]]) -> str:
    try:
        uri = _single(params, "redirect_uri")
    except ValueError:
        raise AuthorizationError("invalid_request", "redirect_uri was given more than once.") from None
    if uri is None:
        # RFC 6749 §3.1.2.3: may be omitted only when exactly one is registered;
        # OIDC Core §3.1.2.1: REQUIRED for OpenID requests.
        openid = any("openid" in value.split(" ") for value in params.get("scope", []))
        if len(client.redirect_uris) == 1 and not openid:
            return client.redirect_uris[0]
        raise AuthorizationError("invalid_request", "The redirect_uri parameter is missing.")
    # RFC 6749 §3.1.2.3 / RFC 9700 §4.1.3: exact string comparison with a registered URI.
    if uri not in client.redirect_uris:
        raise AuthorizationError("invalid_request", "The redirect_uri is not registered for this client.")
    return uri


def _claims_request(value: str | None) -> dict[str, Any] | None:
    """OIDC Core §5.5: a JSON object whose ``userinfo`` / ``id_token`` members are objects."""
    if value is None:
        return None
    try:
        claims = json.loads(value)
    except ValueError:
        claims = None
    if not isinstance(claims, dict) or any(
        not isinstance(claims.get(m, {}), dict | None) for m in ("userinfo", "id_token")
    ):
        raise ValueError("The claims parameter must be a JSON object.")
    return claims


def _resources(client: Client, values: Sequence[str]) -> tuple[str, ...]:
    for r in values:
        parts = urlsplit(r)
        # RFC 8707 §2: an absolute URI without a fragment, and one this client may target.
        if not parts.scheme or "#" in r or r not in client.audiences:
            raise LookupError(r)
    return tuple(dict.fromkeys(values))


async def validate(config: Config, params: dict[str, list[str]]) -> AuthorizationRequest:
    """``params``: every query parameter with all its values, in order."""
    client = await _client(config, params)
    redirect_uri = _redirect_uri(client, params)
    raw_state = params.get("state", [])
    state = raw_state[0] if len(raw_state) == 1 and raw_state[0] else None

    def fail(error: str, description: str) -> AuthorizationError:
        return AuthorizationError(error, description, redirect_uri=redirect_uri, state=state)

    for name, values in params.items():
        if len(values) > 1 and name not in _MULTI_VALUED:
            raise fail("invalid_request", f"{name} was given more than once.")
    one = {name: values[0] for name, values in params.items() if values and values[0]}

    # OIDC Core §6: request objects are not supported by this provider.
    if "request" in one:
        raise fail("request_not_supported", "Request objects are not supported.")
    if "request_uri" in one:
        raise fail("request_uri_not_supported", "request_uri is not supported.")
    response_type = one.get("response_type")
    if response_type is None:
        raise fail("invalid_request", "The response_type parameter is missing.")
    if response_type != "code":
        # §4.1.2.1 unsupported_response_type: only the authorization code flow is offered.
        raise fail("unsupported_response_type", "Only response_type=code is supported.")
    if one.get("response_mode", "query") != "query":
        raise fail("invalid_request", "Only response_mode=query is supported.")
    if "authorization_code" not in client.grant_types:
        raise fail("unauthorized_client", "The client may not use the authorization code grant.")
    # RFC 6749 §10.12: state binds the response to the user agent; this provider requires it.
    if state is None:
        raise fail("invalid_request", "The state parameter is missing.")
    if len(state) > _MAX_PARAM:
        raise fail("invalid_request", "The state parameter is too long.")

    # RFC 7636 §4.4.1: a missing challenge, or a method the server does not support.
    challenge = one.get("code_challenge")
    method = one.get("code_challenge_method", "plain")  # §4.3: defaults to "plain"
    if challenge is None:
        raise fail("invalid_request", "code_challenge is required (PKCE).")
    if method != "S256":
        raise fail("invalid_request", "Only code_challenge_method=S256 is supported.")
    if not _S256_CHALLENGE.fullmatch(challenge):
        raise fail("invalid_request", "The code_challenge is malformed.")

    raw_scope = one.get("scope")
    if raw_scope is not None and not _SCOPE.fullmatch(raw_scope):
        raise fail("invalid_scope", "The scope parameter is malformed.")
    requested = tuple(dict.fromkeys(raw_scope.split(" "))) if raw_scope else None
    try:
        scope = await config.hooks.authorize_scope(client, requested, grant_type="authorization_code")
    except OAuthError as exc:
        raise fail(exc.error, "The requested scope is not allowed for this client.") from None
    if not scope:
        raise fail("invalid_scope", "No scope was requested.")

    nonce = one.get("nonce")
    if nonce is not None and len(nonce) > _MAX_PARAM:
        raise fail("invalid_request", "The nonce parameter is too long.")
    prompt = tuple(one.get("prompt", "").split())
    # OIDC Core §3.1.2.1: "none" MUST NOT be combined with any other value.
    if not set(prompt) <= _PROMPTS or ("none" in prompt and len(prompt) > 1):
        raise fail("invalid_request", "The prompt parameter is invalid.")
    max_age: int | None = None
    if "max_age" in one:
        if not one["max_age"].isdigit():
            raise fail("invalid_request", "max_age must be a non-negative integer.")
        max_age = int(one["max_age"])
    try:
        claims = _claims_request(one.get("claims"))
    except ValueError as exc:
        raise fail("invalid_request", str(exc)) from None
    try:
        resource = _resources(client, params.get("resource", []))
    except LookupError:
        raise fail("invalid_target", "The resource is not valid for this client.") from None
    login_hint = one.get("login_hint")
    return AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        state=state,
        code_challenge=challenge,
        code_challenge_method=method,
        nonce=nonce,
        prompt=prompt,
        max_age=max_age,
        claims=claims,
        resource=resource,
        login_hint=login_hint[:_MAX_PARAM] if login_hint else None,
    )

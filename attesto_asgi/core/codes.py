"""``issue_code``: the host mints an authorization code after it authenticated the user and
got consent (DESIGN §2, RFC 6749 §4.1.2).

The code is a 256-bit random value; only ``token_hash(code)`` is stored, in a ``CodeRecord``
that binds everything the token endpoint later checks or copies into tokens. Each code
starts a new token family: every token issued from it joins that family, so a second
presentation of the code can revoke them all at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from .._secrets import new_id, new_token, token_hash
from ..config import Config
from ..errors import INVALID_REQUEST, INVALID_SCOPE, INVALID_TARGET, UNAUTHORIZED_CLIENT, OAuthError
from ..model import Client, CodeRecord
from ..store import CodeStore
from .pkce import S256, challenge_well_formed
from .scope import check_resources, parse_scope

__all__ = ["CODE_REUSE_MARGIN", "MAX_NONCE_LENGTH", "issue_code"]

GRANT_TYPE: Final = "authorization_code"
# The tombstone of a redeemed code is kept this long past the code's expiry, so a replay
# shortly after expiry is still detected as reuse (and revokes the family) rather than
# answered as an unknown code.
CODE_REUSE_MARGIN: Final = 600
# The nonce is copied into the ID token; bound it like every other input.
MAX_NONCE_LENGTH: Final = 512
AUTH_TIME_SKEW: Final = 60
_CLAIMS_MEMBERS: Final = frozenset({"id_token", "userinfo"})


async def issue_code(
    config: Config,
    *,
    client_id: str,
    redirect_uri: str,
    subject: str,
    scope: str | Iterable[str] | None,
    code_challenge: str | None = None,
    code_challenge_method: str = S256,
    auth_time: float,
    nonce: str | None = None,
    acr: str | None = None,
    amr: Iterable[str] = (),
    claims: Mapping[str, Any] | None = None,
    resource: Iterable[str] = (),
    sid: str | None = None,
) -> str:
    """Validate an authorization request the host has approved and store its code.

    ``scope`` is the authorization request's ``scope`` (a space-separated string, or the
    scope tokens the user consented to); ``auth_time`` is when the user actually
    authenticated (epoch seconds; never defaulted to now). ``claims`` is the OIDC
    ``claims`` request parameter (§5.5), ``resource`` the RFC 8707 resource indicators.

    Raises ``OAuthError`` with the RFC 6749 §4.1.2.1 code for a bad request. Errors about
    the client or the ``redirect_uri`` are raised first: for those the host must show an
    error page and MUST NOT redirect (§4.1.2.1); later errors may be redirected to the
    (now validated) ``redirect_uri``. A host programming error (empty subject, bad types)
    raises ``ValueError``.
    """
    if not subject:
        raise ValueError("issue_code needs the authenticated subject")
    now = config.clock()
    auth_time_plausible(auth_time, now)
    client = await config._policy.load_client(config, client_id)
    if client is None:
        raise OAuthError(INVALID_REQUEST, "Unknown client.", detail=f"issue_code: unknown client {client_id!r}")
    redirect_uri_registered(client, redirect_uri)
    grant_allowed(client)
    challenge = pkce_bound(client, code_challenge, code_challenge_method)
    requested = _requested_scope(scope)
    granted = await config._policy.authorize_scope(client, requested, grant_type=GRANT_TYPE, subject=subject)
    resources = resources_allowed(client, tuple(resource))
    nonce_well_formed(nonce)
    claims_request = claims_well_formed(claims)
    code = new_token()
    expires_at = now + config.code_ttl
    record = CodeRecord(
        code_hash=token_hash(code),
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        subject=subject,
        scope=granted,
        family_id=new_id(),
        issued_at=now,
        expires_at=expires_at,
        reuse_detect_until=expires_at + CODE_REUSE_MARGIN,
        auth_time=int(auth_time),
        nonce=nonce,
        acr=acr,
        amr=_strings(amr, "amr"),
        sid=sid,
        claims=claims_request,
        resource=resources,
        code_challenge=challenge,
        code_challenge_method=S256 if challenge is not None else None,
    )
    store: CodeStore = config.backend
    await store.put_code(record)
    return code


def auth_time_plausible(auth_time: float, now: float) -> None:
    """OIDC Core §2 ``auth_time``: the time the user authenticated, in seconds, so never in
    the future (a value in milliseconds is the usual host mistake)."""
    if isinstance(auth_time, bool) or not isinstance(auth_time, int | float):
        raise ValueError("auth_time must be epoch seconds")
    if not 0 < auth_time <= now + AUTH_TIME_SKEW:
        raise ValueError("auth_time must be epoch seconds, not in the future")


def redirect_uri_registered(client: Client, redirect_uri: str) -> None:
    # RFC 9700 §4.1.3 / RFC 6749 §3.1.2.3: "simple string comparison" with a registered URI.
    if redirect_uri not in client.redirect_uris:
        raise OAuthError(
            INVALID_REQUEST,
            "The redirect_uri is not registered for the client.",
            detail=f"issue_code: redirect_uri not registered for {client.client_id!r}",
        )


def grant_allowed(client: Client) -> None:
    # RFC 6749 §4.1.2.1 unauthorized_client: not authorized to request a code.
    if GRANT_TYPE not in client.grant_types:
        raise OAuthError(UNAUTHORIZED_CLIENT, detail=f"issue_code: {client.client_id!r} lacks authorization_code")


def pkce_bound(client: Client, challenge: str | None, method: str) -> str | None:
    """The challenge to bind, or None for a confidential client registered without PKCE."""
    if challenge is None:
        # RFC 9700 §2.1.1: public clients MUST use PKCE; we require it of every client
        # unless a confidential client is registered with require_pkce=False.
        if client.is_public or client.require_pkce:
            raise OAuthError(INVALID_REQUEST, "code_challenge required.", detail="issue_code: PKCE required")
        return None
    # RFC 7636 §4.4.1: an unsupported transform is invalid_request; plain is refused
    # (RFC 9700 §2.1.1: S256 is the method to use).
    if method != S256:
        raise OAuthError(INVALID_REQUEST, "transform algorithm not supported", detail=f"issue_code: method {method!r}")
    if not challenge_well_formed(challenge):
        raise OAuthError(
            INVALID_REQUEST, "The code_challenge is malformed.", detail="issue_code: challenge not 43 base64url chars"
        )
    return challenge


def _requested_scope(scope: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if scope is None or isinstance(scope, str):
        return parse_scope(scope)
    tokens = _strings(scope, "scope")
    # RFC 6749 §3.3: each scope-token is 1*NQCHAR (so no space inside one token).
    for token in tokens:
        if parse_scope(token) != (token,):
            raise OAuthError(INVALID_SCOPE, "The scope is malformed.", detail="scope syntax (RFC 6749 §3.3)")
    return tuple(dict.fromkeys(tokens)) if tokens else None


def resources_allowed(client: Client, resources: tuple[str, ...]) -> tuple[str, ...]:
    # RFC 8707 §2: absolute URIs without a fragment, each one the client may target.
    check_resources(resources)
    extra = set(resources).difference(client.audiences)
    if extra:
        raise OAuthError(INVALID_TARGET, detail=f"issue_code: resource not allowed for client: {sorted(extra)}")
    return tuple(dict.fromkeys(resources))


def nonce_well_formed(nonce: str | None) -> None:
    if nonce is not None and not 0 < len(nonce) <= MAX_NONCE_LENGTH:
        raise OAuthError(INVALID_REQUEST, "The nonce is empty or too long.", detail="issue_code: nonce length")


def claims_well_formed(claims: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """OIDC Core §5.5: a JSON object whose ``id_token`` / ``userinfo`` members are objects."""
    if claims is None:
        return None
    if not isinstance(claims, Mapping):
        raise OAuthError(INVALID_REQUEST, "The claims parameter is malformed.", detail="claims not an object")
    for member in _CLAIMS_MEMBERS.intersection(claims):
        value = claims[member]
        if value is not None and not isinstance(value, Mapping):
            raise OAuthError(
                INVALID_REQUEST, "The claims parameter is malformed.", detail=f"claims.{member} not an object"
            )
    try:
        # Stored with the code by every backend: it must be plain JSON.
        decoded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(claims))
    except (TypeError, msgspec.EncodeError):
        raise OAuthError(INVALID_REQUEST, "The claims parameter is malformed.", detail="claims not JSON data") from None
    return decoded


def _strings(values: Iterable[str], name: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ValueError(f"{name} must be a sequence of strings, not one string")
    out = tuple(values)
    if not all(isinstance(v, str) and v for v in out):
        raise ValueError(f"{name} must hold non-empty strings")
    return out

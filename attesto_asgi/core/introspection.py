"""``introspect(config, request)``: token introspection (RFC 7662), conn-free like ``issue``.

Only clients registered with ``may_introspect`` (and able to authenticate: not public)
may ask. The answer is ``{"active": false}`` for anything that is not a live token of
ours: unknown, malformed, expired, revoked, of a revoked family, rotated, of a subject
that is no longer active, or a refresh token of another client (RFC 7662 §2.2: nothing
more is said about an inactive token).
"""

from __future__ import annotations

from typing import Any, Final

from ..config import Config
from ..errors import UNAUTHORIZED_CLIENT, OAuthError
from ..events import TOKEN_INTROSPECTED
from ..model import Client, Denied, Introspected, PresentedToken, RefreshRecord, VerifiedToken
from ..store import AccessTokenStore
from .presented import Unrecognized, endpoint_denied, endpoint_event, identify
from .scope import format_scope

__all__ = ["introspect"]
# Claims of an access token passed through to the answer when present (RFC 7662 §2.2,
# RFC 8693 §4.1 act, RFC 7800 §3 cnf).
_PASSED_THROUGH: Final = ("act", "cnf")


def inactive() -> dict[str, Any]:
    return {"active": False}


def active(scope: tuple[str, ...], **metadata: Any) -> dict[str, Any]:
    """RFC 7662 §2.2: ``active`` true, ``scope`` when the token has one, then the metadata."""
    return {"active": True, **({"scope": format_scope(scope)} if scope else {}), **metadata}


def caller_may_introspect(client: Client) -> None:
    # RFC 7662 §2.1: the endpoint MUST require authorization; we allow registered clients only.
    if not client.may_introspect or client.is_public:
        raise OAuthError(
            UNAUTHORIZED_CLIENT,
            "The client is not authorized to introspect tokens.",
            detail="client lacks may_introspect, or is public",
        )


async def subject_active(config: Config, subject: str, *, clients_own: bool) -> bool:
    """``hooks.subject_active`` for a user; a client's own token (client_credentials: no
    family, ``sub`` is the client) is not a user's, so the hook is not asked about it. Told
    by where the token came from, not by the name alone: a user may share a client's id."""
    return clients_own or await config._policy.subject_active(subject)


async def describe_refresh(config: Config, client: Client, record: RefreshRecord) -> tuple[dict[str, Any], str]:
    if record.client_id != client.client_id:
        return inactive(), "refresh token of another client"
    if record.rotated_at is not None:
        return inactive(), "refresh token already rotated"
    if not await subject_active(config, record.subject, clients_own=False):  # a refresh token is a user's
        return inactive(), "subject no longer active"
    return active(
        record.scope,
        client_id=record.client_id,
        sub=record.subject,
        iss=config.issuer,
        exp=int(record.expires_at),
        iat=int(record.issued_at),
    ), "active"


async def describe_access(config: Config, token: VerifiedToken) -> tuple[dict[str, Any], str]:
    access: AccessTokenStore = config.backend
    # identify() verified the signature: the token's fid is ours.
    if token.jti is None or await access.access_token_revoked(token.jti, token.family_id):
        return inactive(), "access token revoked, or its family revoked"
    clients_own = token.family_id is None and token.subject == token.client_id
    if not await subject_active(config, token.subject, clients_own=clients_own):
        return inactive(), "subject no longer active"
    claims = token.claims
    body = active(
        token.scope,
        client_id=token.client_id,
        sub=token.subject,
        aud=claims["aud"],
        iss=token.issuer,
        exp=token.expires_at,
        iat=token.issued_at,
        jti=token.jti,
        token_type="Bearer",
    )
    body.update((name, claims[name]) for name in _PASSED_THROUGH if name in claims)
    return body, "active"


async def introspect(config: Config, request: PresentedToken) -> Introspected | Denied:
    """Handle one introspection request of an already authenticated client."""
    now = config.clock()
    client = request.client
    try:
        caller_may_introspect(client)
        found = await identify(config, request.token, now)
        data: dict[str, Any]
        if isinstance(found, Unrecognized):
            body, reason, data = inactive(), found.reason, {}
        elif isinstance(found, RefreshRecord):
            body, reason = await describe_refresh(config, client, found)
            data = {"token_type": "refresh_token", "family_id": found.family_id}
        else:
            body, reason = await describe_access(config, found)
            data = {"token_type": "access_token", "jti": found.jti}
    except Exception as exc:
        return endpoint_denied(exc, now, client, "introspection")
    event = endpoint_event(
        TOKEN_INTROSPECTED, now, client, subject=body.get("sub"), active=body["active"], reason=reason, **data
    )
    return Introspected(body=body, events=(event,))

"""What a token presented to the revocation or introspection endpoint is.

RFC 7009 §2.1 / RFC 7662 §2.1: ``token_type_hint`` is only a hint, and the server MUST
search across all its token types when the hint does not find it. Our two kinds cannot be
confused, so the shape decides and the hint is never needed: a refresh token is
``<family_id>.<secret>`` (one dot), an access token a compact JWS (two dots).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..config import Config
from ..events import TOKEN_DENIED, Event
from ..model import Client, Denied, RefreshRecord, VerifiedToken
from ..store import RefreshStore
from .issuer import as_oauth_error
from .refresh import split_refresh_token
from .verify import ACCESS_TOKEN_TYPE, InvalidToken, trusted_keys, verify_jwt

__all__ = ["Unrecognized", "endpoint_denied", "endpoint_event", "identify"]


class Unrecognized(NamedTuple):
    """Not a live token of ours; ``reason`` is for the audit log only."""

    reason: str


async def identify(config: Config, token: str, now: float) -> RefreshRecord | VerifiedToken | Unrecognized:
    """The refresh record (live, family not revoked; maybe already rotated), or our verified,
    unexpired access token (its revocation state is the caller's question), or why not."""
    split = split_refresh_token(token)
    if split is not None:
        refresh: RefreshStore = config.backend
        record = await refresh.get_refresh(*split)
        return record if record is not None else Unrecognized("refresh token unknown, expired or family revoked")
    try:
        return verify_jwt(trusted_keys(config.keys), token, token_type=ACCESS_TOKEN_TYPE, issuer=config.issuer, now=now)
    except InvalidToken as exc:
        return Unrecognized(f"not a valid access token: {exc.reason}")


def endpoint_event(
    name: str, now: float, client: Client, *, subject: str | None = None, scope: tuple[str, ...] = (), **data: Any
) -> Event:
    """An audit event of the revocation or introspection endpoint (no grant type)."""
    return Event(name=name, at=now, client_id=client.client_id, subject=subject, scope=scope, data=data)


def endpoint_denied(exc: Exception, now: float, client: Client, endpoint: str) -> Denied:
    """The error answer of the revocation or introspection core, with its ``token_denied`` event."""
    error = as_oauth_error(exc, endpoint)
    event = endpoint_event(TOKEN_DENIED, now, client, endpoint=endpoint, error=error.error, reason=error.detail)
    return Denied(error=error, events=(event,))

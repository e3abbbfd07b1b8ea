"""``revoke(config, request)``: token revocation (RFC 7009), conn-free like ``issue``.

Revoking a refresh token revokes its whole family (every refresh token, and every access
token carrying the family as ``fid``: RFC 7009 §2.1 "SHOULD also invalidate all access tokens
based on the same authorization grant"); revoking one of our access tokens records its
``jti`` revoked. Anything else (unknown, expired, already revoked, another client's) changes
nothing and is answered exactly like a success (RFC 7009 §2.2), so the answer never reveals
whether the token existed. A store that cannot be reached is 503: a revocation is never
reported done when it was not.
"""

from __future__ import annotations

import logging

from ..config import Config
from ..events import TOKEN_REVOKED, Event
from ..model import Denied, PresentedToken, RefreshRecord, Revoked, VerifiedToken
from ..store import AccessTokenStore, FamilyStore
from .presented import Unrecognized, endpoint_denied, endpoint_event, identify
from .tokens import family_revocation_until

__all__ = ["revoke"]

log = logging.getLogger("attesto_asgi.revocation")


async def revoke_family_of(config: Config, request: PresentedToken, record: RefreshRecord, now: float) -> Event:
    client = request.client
    families: FamilyStore = config.backend
    until = family_revocation_until(config, client, now, record.family_expires_at)
    newly = await families.revoke_family(record.family_id, until)
    return endpoint_event(
        TOKEN_REVOKED,
        now,
        client,
        subject=record.subject,
        scope=record.scope,
        token_type="refresh_token",
        family_id=record.family_id,
        family_newly_revoked=newly,
    )


async def revoke_access_token(config: Config, request: PresentedToken, token: VerifiedToken, now: float) -> Event:
    assert token.jti is not None  # verify_jwt requires it of an access token
    access: AccessTokenStore = config.backend
    await access.revoke_access_token(token.jti, token.expires_at)
    return endpoint_event(
        TOKEN_REVOKED,
        now,
        request.client,
        subject=token.subject,
        scope=token.scope,
        token_type="access_token",
        jti=token.jti,
    )


def issued_to_caller(request: PresentedToken, found: RefreshRecord | VerifiedToken) -> bool:
    # RFC 7009 §2.1: the server "verifies whether the token was issued to the client making
    # the revocation request"; when not, nothing is revoked (and the answer is the same).
    return found.client_id == request.client.client_id


async def revoke(config: Config, request: PresentedToken) -> Revoked | Denied:
    """Handle one revocation request of an already authenticated client."""
    now = config.clock()
    try:
        found = await identify(config, request.token, now)
        if isinstance(found, Unrecognized) or not issued_to_caller(request, found):
            reason = found.reason if isinstance(found, Unrecognized) else "issued to another client"
            log.debug("revocation by %s changed nothing: %s", request.client.client_id, reason)
            return Revoked()
        if isinstance(found, RefreshRecord):
            return Revoked(events=(await revoke_family_of(config, request, found, now),))
        return Revoked(events=(await revoke_access_token(config, request, found, now),))
    except Exception as exc:
        return endpoint_denied(exc, now, request.client, "revocation")

"""Access tokens (RFC 9068 JWT) and the RFC 6749 §5.1 response body."""

from __future__ import annotations

import logging
from typing import Any, Final

from .._secrets import new_id
from ..config import Config
from ..errors import INVALID_GRANT, INVALID_REQUEST, INVALID_TARGET, OAuthError
from ..model import Client
from ..store import FamilyStore
from .context import Context
from .scope import format_scope

__all__ = [
    "AT_RESERVED_CLAIMS",
    "FAMILY_CLAIM",
    "AccessToken",
    "MintError",
    "family_owner",
    "family_revocation_until",
    "family_revoked_during_request",
    "family_still_live",
    "mint_access_token",
    "resolve_audience",
    "token_response",
]

log = logging.getLogger("attesto_asgi.tokens")

# The token family a token belongs to (private claim). Signed by us, so the family of a
# presented token is known without a store lookup: a revocation check asks the store about
# the verified token's jti and this family in one call (no jti -> family index is kept).
# It is not secret (it is also the readable prefix of the family's refresh tokens) and is
# useless on its own.
FAMILY_CLAIM: Final = "fid"

# Claims the server sets; a hook's claim of the same name never overrides them.
AT_RESERVED_CLAIMS: Final = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "client_id",
        "scope",
        "auth_time",
        "acr",
        "amr",
        "act",
        "cnf",
        FAMILY_CLAIM,
    }
)


class MintError(Exception):
    """A token could not be minted (server fault, not the client's). Logged in full;
    the client sees RFC 6749 §5.2 ``invalid_request`` "unable to issue token"."""

    def to_oauth(self) -> OAuthError:
        return OAuthError(INVALID_REQUEST, "Unable to issue token.", detail=f"mint failure: {self}")


class AccessToken:
    """A minted access token: the compact JWS, its claims, its lifetime in seconds (a plain
    class for the reason given on ``client_auth.Authenticated``)."""

    __slots__ = ("claims", "expires_in", "token")

    def __init__(self, token: str, claims: dict[str, Any], expires_in: int) -> None:
        self.token: Final = token
        self.claims: Final = claims
        self.expires_in: Final = expires_in


def resolve_audience(ctx: Context, client: Client, resources: tuple[str, ...]) -> tuple[str, ...]:
    """The ``aud`` of a new access token: the requested resources, each one the client may
    target (RFC 8707 §2: ``invalid_target`` otherwise), or the default audience."""
    if resources:
        if not set(resources).issubset(client.audiences):
            raise OAuthError(
                INVALID_TARGET,
                detail=f"resource not allowed for client: {sorted(set(resources) - set(client.audiences))}",
            )
        return resources
    return (ctx.config.default_audience or client.client_id,)


async def mint_access_token(
    ctx: Context,
    *,
    client: Client,
    subject: str,
    scope: tuple[str, ...],
    audience: tuple[str, ...],
    family_id: str | None = None,
    auth_time: int | None = None,
    acr: str | None = None,
    amr: tuple[str, ...] = (),
    act: dict[str, Any] | None = None,
    not_after: float | None = None,
    typ: str = "at+jwt",
) -> AccessToken:
    """Sign an RFC 9068 access token. ``not_after`` caps ``exp`` (a token never outlives
    what it was derived from). With a ``family_id`` the token carries it (``fid``, signed),
    so revoking the family makes this token inactive; nothing is written to the store."""
    config = ctx.config
    iat = int(ctx.now)
    exp = iat + (client.access_token_ttl or config.access_token_ttl)
    if not_after is not None:
        exp = min(exp, int(not_after))
    policy = ctx.policy
    extra = await policy.hooks.access_token_claims(client, subject, scope) if policy.asks_access_token_claims else None
    # RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti are REQUIRED. A hook's claim never
    # takes a reserved name, even one this token leaves out (no forged act, cnf or fid).
    claims: dict[str, Any] = {k: v for k, v in extra.items() if k not in AT_RESERVED_CLAIMS} if extra else {}
    claims["iss"] = config.issuer
    claims["sub"] = subject
    claims["aud"] = audience[0] if len(audience) == 1 else list(audience)
    claims["exp"] = exp
    claims["iat"] = iat
    claims["jti"] = new_id()
    claims["client_id"] = client.client_id
    # Each optional claim only when known: never null.
    if scope:
        claims["scope"] = format_scope(scope)
    if auth_time is not None:
        claims["auth_time"] = auth_time
    if acr is not None:
        claims["acr"] = acr
    if amr:
        claims["amr"] = list(amr)
    if act is not None:
        claims["act"] = act
    if family_id is not None:
        claims[FAMILY_CLAIM] = family_id
    try:
        token = config.keys.signer().sign(claims, typ)
    except Exception as exc:
        log.exception("access token signing failed")
        raise MintError(f"signing failed: {exc.__class__.__name__}") from exc
    return AccessToken(token, claims, exp - iat)


def family_revoked_during_request() -> OAuthError:
    # RFC 6749 §5.2 invalid_grant: the grant "is ... revoked".
    return OAuthError(INVALID_GRANT, detail="the family was revoked during the request")


async def family_still_live(ctx: Context, family_id: str) -> None:
    """A family revoked while the request ran (a concurrent reuse or revocation) ends it with
    ``invalid_grant``. Only for a step that no atomic store operation guards (the refresh
    grace retry): the tokens carry the family (``fid``), so they read as revoked anyway, and
    this keeps a dead token from being reported issued."""
    families: FamilyStore = ctx.config.backend
    if await families.family_revoked(family_id):
        raise family_revoked_during_request()


def family_revocation_until(
    config: Config, client: Client | None, now: float, family_expires_at: float | None = None
) -> float:
    """How long a family's revocation must stick: past the family's end of life (``now`` plus
    the longest family lifetime when the end is not known) and past every token that carries
    the family (``fid``) and may have been minted by now: its access tokens (``client``'s
    lifetime: the client the family was issued to) and its ID tokens, which a token exchange
    accepts as subject tokens."""
    lifetime = max(config.access_token_ttl, (client.access_token_ttl or 0) if client else 0, config.id_token_ttl)
    if family_expires_at is None:
        family_expires_at = now + max(config.refresh_family_ttl, (client.refresh_family_ttl or 0) if client else 0)
    return max(family_expires_at, now + lifetime)


async def family_owner(ctx: Context, client_id: str) -> Client | None:
    """The client a family was issued to, whose token lifetimes size its revocation: the
    requesting client when it is that client, else loaded. A lookup that fails is logged and
    the revocation goes ahead on the configured lifetimes (None): a detected reuse revokes
    the family whatever the host's client store is doing."""
    if ctx.request.client.client_id == client_id:
        return ctx.request.client
    try:
        return await ctx.policy.load_client(ctx.config, client_id)
    except Exception:
        log.exception("loading client %r to size a family revocation failed; revoking on the defaults", client_id)
        return None


def token_response(
    at: AccessToken,
    scope: tuple[str, ...],
    *,
    refresh_token: str | None = None,
    id_token: str | None = None,
) -> dict[str, Any]:
    """RFC 6749 §5.1: ``scope`` is always returned (RFC 6749 allows omitting it only when
    identical to the request; always sending it removes the ambiguity)."""
    body: dict[str, Any] = {
        "access_token": at.token,
        "token_type": "Bearer",
        "expires_in": at.expires_in,
    }
    if scope:
        body["scope"] = format_scope(scope)
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    if id_token is not None:
        body["id_token"] = id_token
    return body

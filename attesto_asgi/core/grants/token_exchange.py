"""RFC 8693: OAuth 2.0 token exchange, for impersonation and delegation under an explicit policy.

A confidential client presents a subject token (one of our access tokens or ID tokens, or
another issuer's JWT vouched for by ``hooks.verify_external_token``) and, for delegation, an
actor token. Every check that fails on a token is ``invalid_request`` (RFC 8693 §2.2.2); a
missing or empty ``subject_token`` never falls back to the caller's own identity (LESSONS:
Keycloak CVE-2026-9704). ``hooks.authorize_exchange`` decides who may exchange what for
which audience (LESSONS: Keycloak CVE-2022-1245, the confused deputy).

The new token belongs to the subject token's family (it carries it as ``fid``), so revoking
that family makes exchanged tokens inactive too, also when the revocation lands while the
exchange runs; it never outlives the subject or actor token, never widens their scope, and
no refresh token is issued. The only store round trips are the revocation checks of the
presented tokens.
"""

from __future__ import annotations

from typing import Any, Final

from ...errors import INVALID_CLIENT, INVALID_REQUEST, OAuthError, quoted
from ...events import TOKEN_EXCHANGED
from ...model import Client, TokenRequest, VerifiedToken
from ...store import AccessTokenStore, FamilyStore
from ..context import Context
from ..scope import narrow_scope
from ..tokens import mint_access_token, resolve_audience, token_response
from ..verify import ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TOKEN_TYPE, InvalidToken, trusted_keys, verify_jwt

__all__ = ["CONFIDENTIAL_ONLY", "EXCHANGE_JWT_TYP", "GRANT_TYPE", "MAX_ACT_DEPTH", "PARAMETERS", "handle"]

GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
PARAMETERS: Final = frozenset(
    {
        "subject_token",
        "subject_token_type",
        "actor_token",
        "actor_token_type",
        "requested_token_type",
        "audience",
        "resource",
        "scope",
    }
)
# Confidential clients only, but a public client is told invalid_client (it did not
# authenticate), which handle() answers itself; the issuer's flag would say unauthorized_client.
CONFIDENTIAL_ONLY: Final = False

# RFC 8725 §3.11 explicit typing: the JWT issued for requested_token_type=jwt is not an access
# token (an API checking RFC 9068's "at+jwt" refuses it) and not an ID token ("JWT").
EXCHANGE_JWT_TYP: Final = "token-exchange+jwt"
# requested_token_type -> (typ of the issued JWT, RFC 8693 §2.2.1 token_type)
_ISSUABLE: Final[dict[str, tuple[str, str]]] = {
    ACCESS_TOKEN_TYPE: ("at+jwt", "Bearer"),
    JWT_TOKEN_TYPE: (EXCHANGE_JWT_TYP, "N_A"),
}
# Delegation chains nest one "act" per hop; a chain longer than this is refused.
MAX_ACT_DEPTH: Final = 8


def _invalid(description: str, detail: str) -> OAuthError:
    return OAuthError(INVALID_REQUEST, description, detail=detail)


# ------------------------------------------------------------------ pure checks


def client_authenticated(client: Client) -> None:
    # RFC 8693 §2.1 uses the normal client authentication; RFC 6749 §5.2 invalid_client: "no
    # client authentication included". A public client cannot exchange tokens.
    if client.is_public:
        raise OAuthError(INVALID_CLIENT, status=400, detail="token exchange by a public client")


def token_and_type(request: TokenRequest, role: str, *, required: bool) -> tuple[str, str] | None:
    """RFC 8693 §2.1: ``subject_token`` and ``subject_token_type`` are REQUIRED;
    ``actor_token_type`` is REQUIRED when ``actor_token`` is present and MUST NOT be
    included otherwise. (Empty values were already dropped as omitted.)"""
    token, token_type = request.params.get(f"{role}_token"), request.params.get(f"{role}_token_type")
    if token is None and token_type is None and not required:
        return None
    if token is None or token_type is None:
        raise _invalid(
            f"The {role}_token and {role}_token_type parameters go together.",
            f"{role}_token or {role}_token_type missing",
        )
    return token, token_type


def issued_token_type(request: TokenRequest) -> str:
    wanted = request.params.get("requested_token_type", ACCESS_TOKEN_TYPE)
    # RFC 8693 §2.2.2: a requested type the server cannot issue is invalid_request.
    if wanted not in _ISSUABLE:
        raise _invalid("The requested_token_type is not supported.", f"requested_token_type {quoted(wanted)}")
    return wanted


def _act_depth(act: Any) -> int:
    depth = 0
    while act is not None:
        if not isinstance(act, dict) or not isinstance(act.get("sub"), str):
            return MAX_ACT_DEPTH + 1
        depth += 1
        act = act.get("act")
    return depth


def may_act_allows(subject: VerifiedToken, principal: dict[str, Any]) -> None:
    """RFC 8693 §4.4: a subject token's ``may_act`` names who may act for its subject. Every
    member it has must match the acting party (the actor token, else the client itself)."""
    may_act = subject.claims.get("may_act")
    if may_act is None:
        return
    if not isinstance(may_act, dict) or not may_act or any(principal.get(k) != v for k, v in may_act.items()):
        raise _invalid("The subject token does not allow this actor.", "may_act does not name the acting party")


def delegation(config_issuer: str, subject: VerifiedToken, actor: VerifiedToken | None) -> dict[str, Any] | None:
    """RFC 8693 §4.1: ``act`` names the current actor; the subject token's own ``act`` (the
    prior actors) nests inside it. Without an actor the subject's chain is kept as it is."""
    prior = subject.claims.get("act")
    act: Any = prior
    if actor is not None:
        act = {"sub": actor.subject}
        if actor.issuer != config_issuer:
            act["iss"] = actor.issuer
        if prior is not None:
            act["act"] = prior
    if _act_depth(act) > MAX_ACT_DEPTH:
        raise _invalid("The delegation chain is too long or malformed.", "act chain malformed or too deep")
    return None if act is None else dict(act)


def _int_claim(claims: dict[str, Any], name: str) -> int | None:
    value = claims.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_claim(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) else None


def _amr(claims: dict[str, Any]) -> tuple[str, ...]:
    value = claims.get("amr")
    return tuple(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else ()


# ------------------------------------------------------------------ steps with the store or hooks


async def verified(ctx: Context, client: Client, token: str, token_type: str, role: str) -> VerifiedToken:
    """The subject or actor token, checked as the type it is declared to be; any failure is
    RFC 8693 §2.2.2 ``invalid_request`` with the reason logged."""
    config = ctx.config
    try:
        if token_type in (ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE):
            found = verify_jwt(
                trusted_keys(config.keys), token, token_type=token_type, issuer=config.issuer, now=ctx.now
            )
        elif token_type == JWT_TOKEN_TYPE:
            external = await config.hooks.verify_external_token(client, token, token_type)
            if external is None:
                raise InvalidToken("not accepted by hooks.verify_external_token")
            found = external
        else:
            raise InvalidToken(f"unsupported token type {quoted(token_type)}")
        if found.expires_at <= ctx.now:
            raise InvalidToken("expired")
        await not_revoked(ctx, found)
    except InvalidToken as exc:
        raise _invalid(f"The {role}_token is invalid.", f"{role}_token: {exc.reason}") from None
    if found.subject != found.client_id and not await ctx.policy.subject_active(found.subject):
        raise _invalid(f"The {role}_token is invalid.", f"{role}_token: subject no longer active")
    return found


async def not_revoked(ctx: Context, token: VerifiedToken) -> None:
    """``token`` passed its signature check: its ``fid`` is ours to trust."""
    if token.token_type == ACCESS_TOKEN_TYPE and token.jti is not None:
        access: AccessTokenStore = ctx.config.backend
        if await access.access_token_revoked(token.jti, token.family_id):  # the jti, or its family
            raise InvalidToken("revoked, or its family was revoked")
    elif token.family_id is not None:
        families: FamilyStore = ctx.config.backend
        if await families.family_revoked(token.family_id):
            raise InvalidToken("its family was revoked")


# ------------------------------------------------------------------ the grant


async def handle(ctx: Context, request: TokenRequest) -> dict[str, Any]:
    config = ctx.config
    client = request.client
    client_authenticated(client)
    subject_pair = token_and_type(request, "subject", required=True)
    assert subject_pair is not None
    actor_pair = token_and_type(request, "actor", required=False)
    issued_type = issued_token_type(request)
    subject = await verified(ctx, client, *subject_pair, "subject")
    actor = await verified(ctx, client, *actor_pair, "actor") if actor_pair is not None else None
    principal = actor.claims if actor is not None else {"sub": client.client_id, "client_id": client.client_id}
    may_act_allows(subject, principal)
    # RFC 8693 §2.1 audience and resource name the target services; RFC 8707 §2: invalid_target.
    audience = resolve_audience(ctx, client, tuple(dict.fromkeys((*request.audience, *request.resource))))
    # RFC 8693 §2.1 / RFC 6749 §3.3: the scope may only narrow the subject token's.
    scope = narrow_scope(ctx.scope, subject.scope)
    if not await config.hooks.authorize_exchange(client, subject, actor, audience, scope):
        raise _invalid("The subject token may not be exchanged by this client.", "authorize_exchange refused")
    act = delegation(config.issuer, subject, actor)
    typ, token_type = _ISSUABLE[issued_type]
    minted = await mint_access_token(
        ctx,
        client=client,
        subject=subject.subject,
        scope=scope,
        audience=audience,
        family_id=subject.family_id,
        auth_time=_int_claim(subject.claims, "auth_time"),
        acr=_str_claim(subject.claims, "acr"),
        amr=_amr(subject.claims),
        act=act,
        # Never outlives what it was derived from.
        not_after=min(subject.expires_at, actor.expires_at) if actor is not None else subject.expires_at,
        typ=typ,
    )
    # No second family check: the subject's family was checked above, and one revoked since
    # reaches the new token through its fid (it never outlives the subject token).
    ctx.event(
        TOKEN_EXCHANGED,
        subject=subject.subject,
        scope=scope,
        actor=actor.subject if actor is not None else None,
        audience=list(audience),
        jti=minted.claims["jti"],
        family_id=subject.family_id,
        subject_token_type=subject.token_type,
        issued_token_type=issued_type,
    )
    # RFC 8693 §2.2.1: issued_token_type REQUIRED; token_type "N_A" when not an access token;
    # no refresh token.
    body = token_response(minted, scope)
    body.update(token_type=token_type, issued_token_type=issued_type)
    return body

"""RFC 6749 §4.1.3: the authorization code grant, with PKCE (RFC 7636 §4.6), code-reuse
family revocation (RFC 6749 §4.1.2, RFC 9700 §4.13) and OIDC ID tokens (OIDC Core §3.1.3).

The code is taken from the store atomically before anything else about it is checked, so it
can be redeemed at most once and a failed redemption spends it. The store leaves a
tombstone (family id, client id); a later presentation of the same code revokes the whole
family issued from it.

A family revoked while this redemption is in flight (a concurrent replay of the code)
never ends with live tokens: the access token and the ID token carry the family (``fid``),
so they read as revoked once it is, and the refresh token is written last with
``put_refresh``, which the store refuses for a revoked family; that refusal fails the whole
request and nothing is returned. A redemption is two store round trips (``take_code``,
``put_refresh``), one without a refresh token.
"""

from __future__ import annotations

from typing import Any, Final

from ..._secrets import token_hash
from ...errors import INVALID_GRANT, INVALID_REQUEST, INVALID_TARGET, OAuthError
from ...events import CODE_REUSE_DETECTED, FAMILY_REVOKED, REFRESH_ISSUED, TOKEN_ISSUED
from ...model import Client, CodeRecord, CodeReused, TokenRequest
from ...store import CodeStore, FamilyStore, RefreshStore
from ..context import Context
from ..id_token import mint_id_token
from ..pkce import verifier_matches, verifier_well_formed
from ..refresh import family_expires_at, new_refresh_token, refresh_record
from ..scope import offline_access_granted
from ..tokens import (
    family_owner,
    family_revocation_until,
    family_revoked_during_request,
    mint_access_token,
    resolve_audience,
    token_response,
)

__all__ = ["CONFIDENTIAL_ONLY", "GRANT_TYPE", "PARAMETERS", "handle"]

GRANT_TYPE: Final = "authorization_code"
PARAMETERS: Final = frozenset({"code", "redirect_uri", "code_verifier", "resource"})
# RFC 6749 §4.1.3: public clients redeem codes too (identified by client_id, bound by PKCE).
CONFIDENTIAL_ONLY: Final = False


def _invalid_grant(detail: str) -> OAuthError:
    return OAuthError(INVALID_GRANT, detail=detail)


# ------------------------------------------------------------------ pure checks


def required(request: TokenRequest, name: str) -> str:
    # RFC 6749 §4.1.3: code REQUIRED; redirect_uri REQUIRED when the authorization request
    # had one, and issue_code always binds one. Missing parameter: §5.2 invalid_request.
    value = request.params.get(name)
    if value is None:
        raise OAuthError(INVALID_REQUEST, f"The {name} parameter is missing.", detail=f"{name} missing")
    return value


def code_known(taken: CodeRecord | None) -> CodeRecord:
    # RFC 6749 §5.2 invalid_grant: the authorization code is invalid or expired.
    if taken is None:
        raise _invalid_grant("code unknown or expired")
    return taken


def code_not_expired(record: CodeRecord, now: float) -> None:
    if record.expires_at <= now:
        raise _invalid_grant("code expired")


def code_issued_to_client(record: CodeRecord, client: Client) -> None:
    # RFC 6749 §4.1.3: "ensure that the authorization code was issued to the authenticated
    # confidential client, or if the client is public, ... to client_id in the request".
    if record.client_id != client.client_id:
        raise _invalid_grant("code issued to another client")


def redirect_uri_identical(record: CodeRecord, redirect_uri: str) -> None:
    # RFC 6749 §4.1.3: "ensure that their values are identical" (exact string comparison).
    if redirect_uri != record.redirect_uri:
        raise _invalid_grant("redirect_uri differs from the one the code is bound to")


def pkce_verified(record: CodeRecord, client: Client, verifier: str | None) -> None:
    challenge = record.code_challenge
    if challenge is None:
        # RFC 9700 §2.1.1 / LESSONS (PKCE downgrade): a verifier for a code issued without a
        # challenge MUST be refused.
        if verifier is not None:
            raise _invalid_grant("code_verifier sent for a code issued without code_challenge")
        # The client's registration may have changed since the code was issued.
        if client.is_public or client.require_pkce:
            raise _invalid_grant("code issued without PKCE to a client that requires it")
        return
    # RFC 7636 §4.6: the server verifies the code_verifier against the bound challenge.
    if verifier is None:
        raise _invalid_grant("code_verifier missing for a code bound to a code_challenge")
    # RFC 7636 §4.1: code-verifier = 43*128unreserved.
    if not verifier_well_formed(verifier):
        raise _invalid_grant("code_verifier malformed (RFC 7636 §4.1)")
    if not verifier_matches(verifier, challenge):
        raise _invalid_grant("code_verifier does not match code_challenge")


def resources_within_grant(record: CodeRecord, requested: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 8707 §2.2: at the token endpoint ``resource`` narrows the resources the
    authorization request named; omitted, the token is for all of them."""
    if not requested:
        return record.resource
    if record.resource:
        extra = set(requested).difference(record.resource)
        if extra:
            raise OAuthError(INVALID_TARGET, detail=f"resource not granted by the code: {sorted(extra)}")
    return requested


# ------------------------------------------------------------------ steps with the store


async def revoke_reused_family(ctx: Context, reused: CodeReused) -> None:
    """RFC 6749 §4.1.2: "If an authorization code is used more than once, the authorization
    server MUST deny the request and SHOULD revoke ... all tokens previously issued based on
    that authorization code." Revoking the family is one sticky write."""
    config = ctx.config
    ctx.event(CODE_REUSE_DETECTED, family_id=reused.family_id, issued_to=reused.client_id)
    issued_to = await family_owner(ctx, reused.client_id)
    families: FamilyStore = config.backend
    until = family_revocation_until(config, issued_to, ctx.now)
    if await families.revoke_family(reused.family_id, until):
        ctx.event(FAMILY_REVOKED, family_id=reused.family_id, reason="code_reuse")


async def first_refresh_token(ctx: Context, client: Client, record: CodeRecord) -> str | None:
    """OIDC Core §11 via ``hooks.issue_refresh_token``; the token joins the code's family,
    whose absolute lifetime counts from the original authorization (the code's issue)."""
    if "refresh_token" not in client.grant_types:
        return None
    policy = ctx.policy
    if policy.asks_issue_refresh_token:
        if not await policy.hooks.issue_refresh_token(client, record.scope):
            return None
    elif not offline_access_granted(record.scope):
        return None
    token, hashed = new_refresh_token(record.family_id)
    refresh = refresh_record(
        ctx,
        client,
        token_hash=hashed,
        family_id=record.family_id,
        family_expires_at=family_expires_at(ctx, client, record.issued_at),
        subject=record.subject,
        scope=record.scope,
        resource=record.resource,
        auth_time=record.auth_time,
        acr=record.acr,
        amr=record.amr,
        sid=record.sid,
    )
    refresh_tokens: RefreshStore = ctx.config.backend
    # DESIGN §3 / LESSONS: a failed storage write is never reported as success.
    if not await refresh_tokens.put_refresh(refresh):
        raise family_revoked_during_request()
    return token


# ------------------------------------------------------------------ the grant


async def handle(ctx: Context, request: TokenRequest) -> dict[str, Any]:
    config = ctx.config
    client = request.client
    code = required(request, "code")
    redirect_uri = required(request, "redirect_uri")
    # RFC 9700 §4.13 / LESSONS: take the code atomically first; only the taker may go on.
    codes: CodeStore = config.backend
    taken = await codes.take_code(token_hash(code))
    if isinstance(taken, CodeReused):
        await revoke_reused_family(ctx, taken)
        raise _invalid_grant("code presented again: its family is revoked")
    record = code_known(taken)
    code_not_expired(record, ctx.now)
    code_issued_to_client(record, client)
    redirect_uri_identical(record, redirect_uri)
    pkce_verified(record, client, request.params.get("code_verifier"))
    if ctx.policy.asks_subject_active and not await ctx.policy.hooks.subject_active(record.subject):
        raise _invalid_grant("subject no longer active")
    audience = resolve_audience(ctx, client, resources_within_grant(record, request.resource))
    scope = record.scope
    at = await mint_access_token(
        ctx,
        client=client,
        subject=record.subject,
        scope=scope,
        audience=audience,
        family_id=record.family_id,
        auth_time=record.auth_time,
        acr=record.acr,
        amr=record.amr,
    )
    id_token: str | None = None
    if "openid" in scope:
        requested_claims = (record.claims or {}).get("id_token")
        id_token = await mint_id_token(
            ctx,
            client=client,
            subject=record.subject,
            scope=scope,
            access_token=at.token,
            auth_time=record.auth_time,
            code=code,
            nonce=record.nonce,
            acr=record.acr,
            amr=record.amr,
            sid=record.sid,
            requested_claims=requested_claims if isinstance(requested_claims, dict) else None,
            family_id=record.family_id,
        )
    # Last: put_refresh refuses a revoked family. Without a refresh token nothing more is
    # asked: a family revoked from now on reaches these tokens through their fid.
    refresh_token = await first_refresh_token(ctx, client, record)
    ctx.event(
        TOKEN_ISSUED,
        subject=record.subject,
        scope=scope,
        jti=at.claims["jti"],
        aud=list(audience),
        family_id=record.family_id,
        id_token=id_token is not None,
    )
    if refresh_token is not None:
        ctx.event(REFRESH_ISSUED, subject=record.subject, scope=scope, family_id=record.family_id, generation=0)
    return token_response(at, scope, refresh_token=refresh_token, id_token=id_token)

"""RFC 6749 §6: the refresh token grant, with rotation, reuse detection and a grace window.

1. Parse the token and read it without spending it (``get_refresh``).
2. Checks that must not burn the token: its client, the scope and resources (only
   narrowing), the host's scope policy, the subject still active. A request failing
   them leaves the token usable.
3. Mint the access token (and ID token) before the commit point, so a minting fault
   never burns the token either.
4. One compare-and-set (``rotate_refresh``): only when it answers ``Rotated`` is the
   successor handed out. It checks the family first, in the same atomic step, so nothing
   else is asked of the store: a family revoked after that instant still reaches the new
   tokens (the access token carries the family as ``fid``; the successor is in the family).
   A rotation is two store round trips: ``get_refresh`` and ``rotate_refresh``.
5. A token that was already rotated is reuse (RFC 9700 §4.14.2): the whole family is
   revoked, unless this is a retry inside the grace window of the token *just* rotated,
   from the same client, for the same scope and resources, while its successor is unused;
   that retry gets the same successor back (unsealed) and a new access token. No
   compare-and-set guards a retry, so it ends by asking whether the family is still live.
"""

from __future__ import annotations

import hmac
from typing import Any, Final, NoReturn, Protocol

import msgspec

from ..._secrets import token_hash
from ...errors import INVALID_GRANT, INVALID_REQUEST, INVALID_TARGET, OAuthError
from ...events import FAMILY_REVOKED, REFRESH_REUSE_DETECTED, REFRESH_ROTATED
from ...model import AlreadyRotated, Client, RefreshRecord, Rotated, TokenRequest
from ...store import FamilyStore, RefreshStore
from .._wire import Sealed
from ..context import Context
from ..id_token import mint_id_token
from ..refresh import new_refresh_token, refresh_record, split_refresh_token
from ..scope import client_scope, narrow_scope
from ..seal import seal, sealer, unseal
from ..tokens import (
    AccessToken,
    family_owner,
    family_revocation_until,
    family_still_live,
    mint_access_token,
    resolve_audience,
    token_response,
)

__all__ = ["CONFIDENTIAL_ONLY", "GRANT_TYPE", "PARAMETERS", "handle"]

GRANT_TYPE: Final = "refresh_token"
PARAMETERS: Final = frozenset({"refresh_token", "scope", "resource"})
# RFC 9700 §4.14.2: public clients may refresh when their refresh tokens rotate; ours always do.
CONFIDENTIAL_ONLY: Final = False


class RefreshGrantStore(RefreshStore, FamilyStore, Protocol):
    """The store slice this grant uses."""


class _Plan:
    """What one request asks for, once checked: the access token's scope and audience.
    (Plain classes here, for the reason given on ``client_auth.Authenticated``.)"""

    __slots__ = ("audience", "scope")

    def __init__(self, scope: tuple[str, ...], audience: tuple[str, ...]) -> None:
        self.scope: Final = scope
        self.audience: Final = audience


class _Minted:
    __slots__ = ("at", "id_token")

    def __init__(self, at: AccessToken, id_token: str | None) -> None:
        self.at: Final = at
        self.id_token: Final = id_token


_sealed_decoder: Final = msgspec.msgpack.Decoder(Sealed)


# ----------------------------------------------------------------- tiny pure checks


def presented_token(request: TokenRequest) -> tuple[str, str]:
    """``(family_id, token_hash)`` of the presented refresh token."""
    token = request.params.get("refresh_token")
    if token is None:
        # RFC 6749 §6: refresh_token is REQUIRED.
        raise OAuthError(INVALID_REQUEST, "The refresh_token parameter is missing.", detail="no refresh_token")
    parts = split_refresh_token(token)
    if parts is None:
        # RFC 6749 §5.2 invalid_grant: the refresh token is invalid.
        raise OAuthError(INVALID_GRANT, detail="malformed refresh token")
    return parts


def issued_to_client(record: RefreshRecord, client: Client) -> None:
    # RFC 6749 §6: the server MUST "ensure that the refresh token was issued to the authenticated client".
    if record.client_id != client.client_id:
        raise OAuthError(INVALID_GRANT, detail="refresh token issued to another client")


def narrow_resources(requested: tuple[str, ...], granted: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 8707 §2.2: on refresh the resources may only narrow the original grant; omitted
    means the original ones. A grant made without resources covers none."""
    if not requested:
        return granted
    extra = set(requested).difference(granted)
    if extra:
        raise OAuthError(INVALID_TARGET, detail=f"resource not in the original grant: {sorted(extra)}")
    return requested


def within_grace(grace: int, record: RefreshRecord, now: float) -> bool:
    """The retry comes within ``grace`` seconds of the rotation (0 turns the window off)."""
    return grace > 0 and record.rotated_at is not None and now - record.rotated_at < grace


def same_request(plan: _Plan, sealed: Sealed) -> bool:
    """The retry asks for what the rotating request was granted. RFC 6749 §3.3: the order of
    scope strings does not matter (nor does the order of resources)."""
    return set(plan.scope) == set(sealed.scope) and set(plan.audience) == set(sealed.audience)


# ----------------------------------------------------------------- steps


async def _plan(ctx: Context, request: TokenRequest, record: RefreshRecord) -> _Plan:
    client = request.client
    policy = ctx.policy
    # RFC 6749 §6: the scope MUST NOT include any scope not originally granted; omitted = original.
    scope = narrow_scope(ctx.scope, record.scope)
    # Host policy may narrow further (a withdrawn consent), never widen past the original grant.
    if policy.asks_authorize_scope:
        scope = await policy.hooks.authorize_scope(client, scope, grant_type=GRANT_TYPE, subject=record.subject)
    else:
        scope = client_scope(client, scope)
    scope = narrow_scope(scope, record.scope)
    audience = resolve_audience(ctx, client, narrow_resources(request.resource, record.resource))
    if policy.asks_subject_active and not await policy.hooks.subject_active(record.subject):
        raise OAuthError(INVALID_GRANT, detail="subject is no longer active")
    return _Plan(scope, audience)


async def _mint(ctx: Context, client: Client, record: RefreshRecord, plan: _Plan) -> _Minted:
    at = await mint_access_token(
        ctx,
        client=client,
        subject=record.subject,
        scope=plan.scope,
        audience=plan.audience,
        family_id=record.family_id,
        # auth_time is the original authentication's, unchanged by a refresh (OIDC Core §12.2).
        auth_time=record.auth_time,
        acr=record.acr,
        amr=record.amr,
        not_after=record.family_expires_at,
    )
    id_token = None
    if ctx.config.id_token_on_refresh and "openid" in plan.scope:
        # OIDC Core §12.2: same iss, sub, aud, azp and auth_time; a new iat; it SHOULD NOT have a nonce.
        id_token = await mint_id_token(
            ctx,
            client=client,
            subject=record.subject,
            scope=plan.scope,
            access_token=at.token,
            auth_time=record.auth_time,
            acr=record.acr,
            amr=record.amr,
            sid=record.sid,
            # The family travels in the token (fid), so revoking it reaches this ID token too
            # (token exchange refuses a subject ID token of a revoked family).
            family_id=record.family_id,
        )
    return _Minted(at, id_token)


def _seal_successor(ctx: Context, old_hash: str, token: str, plan: _Plan) -> bytes | None:
    """Only with a grace window is the successor kept at all, and then only sealed."""
    if ctx.config.refresh_grace == 0:
        return None
    plaintext = msgspec.msgpack.encode(Sealed(token=token, scope=plan.scope, audience=plan.audience))
    return seal(sealer(ctx.config.secret_key), plaintext, old_hash)


def _unseal_successor(ctx: Context, record: RefreshRecord) -> Sealed | None:
    if record.sealed_successor is None or record.successor_hash is None:
        return None
    plaintext = unseal(sealer(ctx.config.secret_key), record.sealed_successor, record.token_hash)
    if plaintext is None:  # sealed under another secret_key, or altered
        return None
    try:
        sealed = _sealed_decoder.decode(plaintext)
    except msgspec.DecodeError:
        return None
    if not hmac.compare_digest(token_hash(sealed.token), record.successor_hash):
        return None
    return sealed


async def _answer(
    ctx: Context,
    store: RefreshGrantStore,
    record: RefreshRecord,
    plan: _Plan,
    minted: _Minted,
    token: str,
    *,
    retry: bool,
) -> dict[str, Any]:
    if retry:
        # No compare-and-set guarded a grace retry: a family revoked while it ran (a
        # concurrent reuse or revocation) is not answered with its (already dead) tokens.
        # A rotation needs no such check: rotate_refresh refused a revoked family atomically.
        await family_still_live(ctx, record.family_id)
    ctx.event(
        REFRESH_ROTATED,
        subject=record.subject,
        scope=plan.scope,
        family_id=record.family_id,
        generation=record.generation + 1,
        jti=minted.at.claims["jti"],
        aud=list(plan.audience),
        grace_retry=retry,
    )
    return token_response(minted.at, plan.scope, refresh_token=token, id_token=minted.id_token)


async def _reuse(ctx: Context, store: RefreshGrantStore, record: RefreshRecord, reason: str) -> NoReturn:
    """RFC 9700 §4.14.2: a rotated refresh token presented again revokes the whole family."""
    owner = await family_owner(ctx, record.client_id)  # the presenter may be another client
    until = family_revocation_until(ctx.config, owner, ctx.now, record.family_expires_at)
    revoked = await store.revoke_family(record.family_id, until)
    ctx.event(
        REFRESH_REUSE_DETECTED,
        subject=record.subject,
        scope=record.scope,
        family_id=record.family_id,
        generation=record.generation,
        token_client_id=record.client_id,
        reason=reason,
    )
    if revoked:  # once per family, however many replays race
        ctx.event(FAMILY_REVOKED, subject=record.subject, family_id=record.family_id, reason="refresh_reuse")
    raise OAuthError(INVALID_GRANT, detail=f"refresh token reuse ({reason}); family revoked")


async def _successor_used(store: RefreshGrantStore, record: RefreshRecord) -> bool:
    successor = await store.get_refresh(record.family_id, record.successor_hash or "")
    return successor is None or successor.rotated_at is not None


async def _already_rotated(
    ctx: Context,
    request: TokenRequest,
    store: RefreshGrantStore,
    record: RefreshRecord,
    *,
    successor_used: bool | None,
    plan: _Plan | None,
    minted: _Minted | None,
) -> dict[str, Any]:
    """A rotated token again: the grace retry, or reuse. ``plan``/``minted`` are given when
    this request passed the checks and lost the compare-and-set to a concurrent rotation."""
    client = request.client
    if not within_grace(ctx.config.refresh_grace, record, ctx.now):
        await _reuse(ctx, store, record, "rotated token presented outside the grace window")
    if record.client_id != client.client_id:
        await _reuse(ctx, store, record, "rotated token presented by another client")
    sealed = _unseal_successor(ctx, record)
    if sealed is None:
        await _reuse(ctx, store, record, "no sealed successor to return")
    if plan is None:
        try:
            plan = await _plan(ctx, request, record)
        except OAuthError as exc:
            await _reuse(ctx, store, record, f"retry refused: {exc.detail}")
    if not same_request(plan, sealed):
        await _reuse(ctx, store, record, "retry differs in scope or resource from the rotating request")
    if successor_used is None:
        successor_used = await _successor_used(store, record)
    if successor_used:
        # LESSONS: only the token just replaced may be retried, never an older generation.
        await _reuse(ctx, store, record, "successor already used")
    if minted is None:
        minted = await _mint(ctx, client, record, plan)
    return await _answer(ctx, store, record, plan, minted, sealed.token, retry=True)


async def handle(ctx: Context, request: TokenRequest) -> dict[str, Any]:
    client = request.client
    family_id, old_hash = presented_token(request)
    store: RefreshGrantStore = ctx.config.backend
    record = await store.get_refresh(family_id, old_hash)
    if record is None:
        # RFC 6749 §5.2 invalid_grant: the refresh token is invalid, expired or revoked.
        raise OAuthError(INVALID_GRANT, detail="refresh token unknown, expired or of a revoked family")
    if record.rotated_at is not None:
        return await _already_rotated(ctx, request, store, record, successor_used=None, plan=None, minted=None)
    issued_to_client(record, client)
    plan = await _plan(ctx, request, record)
    minted = await _mint(ctx, client, record, plan)
    token, successor_hash = new_refresh_token(family_id)
    # RFC 6749 §6: the new refresh token's scope MUST be identical to the one presented.
    successor = refresh_record(
        ctx,
        client,
        token_hash=successor_hash,
        family_id=family_id,
        family_expires_at=record.family_expires_at,
        subject=record.subject,
        scope=record.scope,
        resource=record.resource,
        auth_time=record.auth_time,
        acr=record.acr,
        amr=record.amr,
        sid=record.sid,
        generation=record.generation + 1,
    )
    result = await store.rotate_refresh(family_id, old_hash, successor, _seal_successor(ctx, old_hash, token, plan))
    if isinstance(result, Rotated):
        return await _answer(ctx, store, record, plan, minted, token, retry=False)
    if isinstance(result, AlreadyRotated):  # lost the race to a concurrent rotation of the same token
        return await _already_rotated(
            ctx, request, store, result.record, successor_used=result.successor_used, plan=plan, minted=minted
        )
    raise OAuthError(INVALID_GRANT, detail=f"refresh token gone at rotation: {result.__class__.__name__}")

"""OpenID Connect ID tokens (OIDC Core §2, §3.1.3.6, §3.1.3.7, §12.2)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from .._secrets import b64url
from ..model import Client
from .context import Context
from .tokens import FAMILY_CLAIM, MintError

__all__ = ["ID_RESERVED_CLAIMS", "half_hash", "id_token_alg", "mint_id_token"]

log = logging.getLogger("attesto_asgi.id_token")

ID_RESERVED_CLAIMS: Final = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "sid",
        "at_hash",
        "c_hash",
        "s_hash",
        FAMILY_CLAIM,
    }
)

# OIDC Core §3.1.3.6: the hash algorithm of the JWS alg; for EdDSA with Ed25519, SHA-512.
_HASH: Final[dict[str, Callable[[bytes], Any]]] = {
    "ES256": hashlib.sha256,
    "RS256": hashlib.sha256,
    "PS256": hashlib.sha256,
    "ES384": hashlib.sha384,
    "RS384": hashlib.sha384,
    "PS384": hashlib.sha384,
    "ES512": hashlib.sha512,
    "RS512": hashlib.sha512,
    "PS512": hashlib.sha512,
    "EdDSA": hashlib.sha512,
}


def half_hash(value: str, alg: str) -> str:
    """``at_hash`` / ``c_hash``: base64url of the left-most half of the hash of the ASCII value."""
    digest: bytes = _HASH[alg](value.encode("ascii")).digest()
    return b64url(digest[: len(digest) // 2])


def id_token_alg(ctx: Context, client: Client) -> str:
    """The client's registered ``id_token_signed_response_alg`` when we hold a key for it."""
    wanted = client.id_token_signed_response_alg
    keys = ctx.config.keys
    return wanted if wanted is not None and keys.has(wanted) else keys.active_alg


async def mint_id_token(
    ctx: Context,
    *,
    client: Client,
    subject: str,
    scope: tuple[str, ...],
    access_token: str | None,
    auth_time: int | None,
    code: str | None = None,
    nonce: str | None = None,
    acr: str | None = None,
    amr: tuple[str, ...] = (),
    sid: str | None = None,
    requested_claims: Mapping[str, Any] | None = None,
    family_id: str | None = None,
) -> str:
    config = ctx.config
    policy = ctx.policy
    extra: Mapping[str, Any] = {}
    if policy.asks_id_token_claims:
        extra = await policy.hooks.id_token_claims(client, subject, scope, requested_claims)
    clash = ID_RESERVED_CLAIMS.intersection(extra)
    if clash:
        # DESIGN §5: a hook claim that collides with a reserved claim fails the request.
        log.error("id_token_claims hook returned reserved claims %s for client %s", sorted(clash), client.client_id)
        raise MintError(f"id_token_claims collides with reserved claims {sorted(clash)}")
    alg = id_token_alg(ctx, client)
    iat = int(ctx.now)
    claims: dict[str, Any] = dict(extra)
    claims["iss"] = config.issuer
    claims["sub"] = subject
    claims["aud"] = client.client_id
    claims["exp"] = iat + config.id_token_ttl
    claims["iat"] = iat
    # OIDC Core §2: azp is the party to which the ID Token was issued.
    claims["azp"] = client.client_id
    # Each optional claim only when known: never null.
    if auth_time is not None:
        claims["auth_time"] = auth_time
    if nonce is not None:
        claims["nonce"] = nonce
    if acr is not None:
        claims["acr"] = acr
    if amr:
        claims["amr"] = list(amr)
    if sid is not None:
        claims["sid"] = sid
    if access_token is not None:
        claims["at_hash"] = half_hash(access_token, alg)
    if code is not None:
        claims["c_hash"] = half_hash(code, alg)
    if family_id is not None:
        # The token family (private claim): token exchange refuses an ID token of a revoked family.
        claims[FAMILY_CLAIM] = family_id
    try:
        return config.keys.signer(alg).sign(claims, "JWT")
    except Exception as exc:
        log.exception("ID token signing failed")
        raise MintError(f"signing failed: {exc.__class__.__name__}") from exc

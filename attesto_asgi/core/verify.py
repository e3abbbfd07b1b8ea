"""Verification of the JWTs this server issued: access tokens (RFC 9068) and ID tokens.

One checker for every place that reads our own tokens back: introspection, revocation,
token exchange's subject and actor tokens, and the resource-server helper
``verify_access_token``. Only our keys are trusted (never a key named by the token), the
algorithm is the one registered with the key, ``typ`` tells an access token from an ID
token, and ``iss``, ``exp`` and (when asked) ``aud`` are checked. Every input is bounded
and every failure is one ``InvalidToken`` whose reason is for logs only.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Final

import msgspec
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

from ..config import Config
from ..errors import quoted
from ..keys import SUPPORTED_ALGS, KeySet
from ..model import VerifiedToken
from ..store import AccessTokenStore

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ID_TOKEN_TYPE",
    "JWT_TOKEN_TYPE",
    "MAX_JWT_BYTES",
    "InvalidToken",
    "TrustedKeys",
    "trusted_keys",
    "verify_access_token",
    "verify_jwt",
]

# RFC 8693 §3 token type identifiers.
ACCESS_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:id_token"
JWT_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:jwt"

# LESSONS (Authlib CVE-2024-37568 and friends): bound every JOSE input before parsing it.
MAX_JWT_BYTES: Final = 16 * 1024
MAX_HEADER_BYTES: Final = 1024

# RFC 9068 §4: resource servers MUST check typ is "at+jwt" or "application/at+jwt"; a media
# type compares case-insensitively (RFC 7515 §4.1.9). Our ID tokens are typed "JWT".
_TYPS: Final[dict[str, frozenset[str]]] = {
    ACCESS_TOKEN_TYPE: frozenset({"at+jwt", "application/at+jwt"}),
    ID_TOKEN_TYPE: frozenset({"jwt", "application/jwt"}),
}
_COMPACT_JWS: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_REGISTRY: Final = jws.JWSRegistry(algorithms=list(SUPPORTED_ALGS))

JoseKey = ECKey | OKPKey | RSAKey


class InvalidToken(Exception):
    """The token is not one we accept. ``reason`` is for logs, never for the token's bearer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Claims(msgspec.Struct):
    """The registered claims we read, with their types checked (a bool is not an int)."""

    iss: str
    sub: str
    aud: str | list[str]
    exp: int
    iat: int | None = None
    nbf: int | None = None
    jti: str | None = None
    client_id: str | None = None
    azp: str | None = None
    scope: str | None = None
    fid: str | None = None  # FAMILY_CLAIM (core/tokens.py)


class TrustedKeys:
    """Verification keys by ``kid``, each with the one algorithm registered for it."""

    __slots__ = ("_by_kid",)

    def __init__(self, by_kid: Mapping[str, tuple[str, JoseKey]]) -> None:
        if not by_kid:
            raise ValueError("no verification keys")
        self._by_kid = dict(by_kid)

    @classmethod
    def from_keyset(cls, keys: KeySet) -> TrustedKeys:
        return cls({k.kid: (k.alg, k.key) for k in keys})

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> TrustedKeys:
        """Public JWKs as published at our ``jwks_uri``: each signing key has ``kid`` and
        ``alg`` (keys without them, or for encryption, are not trusted)."""
        by_kid: dict[str, tuple[str, JoseKey]] = {}
        for jwk in jwks.get("keys", ()):
            alg, kid = jwk.get("alg"), jwk.get("kid")
            if not isinstance(alg, str) or alg not in SUPPORTED_ALGS or not isinstance(kid, str):
                continue
            if jwk.get("use", "sig") != "sig":
                continue
            key = import_key(dict(jwk))
            if not isinstance(key, ECKey | OKPKey | RSAKey) or key.key_type != SUPPORTED_ALGS[alg][0]:
                continue
            by_kid[kid] = (alg, key)
        return cls(by_kid)

    def get(self, kid: str) -> tuple[str, JoseKey] | None:
        return self._by_kid.get(kid)


@lru_cache(maxsize=16)
def trusted_keys(keys: KeySet) -> TrustedKeys:
    """The verification view of a ``KeySet``, built once per KeySet."""
    return TrustedKeys.from_keyset(keys)


@lru_cache(maxsize=16)
def _jwks_keys(encoded: bytes) -> TrustedKeys:
    return TrustedKeys.from_jwks(msgspec.json.decode(encoded))


def _header(segment: str) -> tuple[str, str, str]:
    if len(segment) > MAX_HEADER_BYTES:
        raise InvalidToken("header too large")
    try:
        header = msgspec.json.decode(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidToken("header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise InvalidToken("header is not a JSON object")
    alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
    if not (isinstance(alg, str) and isinstance(kid, str) and isinstance(typ, str)):
        raise InvalidToken("header lacks alg, kid or typ")
    # RFC 7515 §4.1.11: an unknown critical extension MUST be rejected; we define none.
    if "crit" in header:
        raise InvalidToken("header has crit")
    return alg, kid, typ


def _audience(aud: str | list[str]) -> tuple[str, ...]:
    if isinstance(aud, str):
        return (aud,)
    if not aud or not all(isinstance(a, str) for a in aud):
        raise InvalidToken("aud is empty or not strings")
    return tuple(aud)


def verify_jwt(
    keys: TrustedKeys,
    token: str,
    *,
    token_type: str,
    issuer: str,
    now: float,
    audience: Iterable[str] | None = None,
    leeway: float = 0,
) -> VerifiedToken:
    """Verify one of our tokens of ``token_type`` (``ACCESS_TOKEN_TYPE`` or ``ID_TOKEN_TYPE``).

    ``audience``: when given, the token's ``aud`` must name at least one of them. Revocation
    state is not checked here (it needs the store); see ``verify_access_token``.
    """
    typs = _TYPS[token_type]
    if not isinstance(token, str) or len(token) > MAX_JWT_BYTES:
        raise InvalidToken("not a string, or too large")
    # RFC 7515 §7.1: three base64url segments (checked here: the decoders below are lenient).
    if not _COMPACT_JWS.fullmatch(token):
        raise InvalidToken("not a compact JWS")
    alg, kid, typ = _header(token.split(".", 1)[0])
    found = keys.get(kid)
    # LESSONS: never a key from the token's own header; the algorithm is pinned to the key.
    if found is None:
        raise InvalidToken("kid is not one of our keys")
    if alg != found[0]:
        raise InvalidToken(f"alg {quoted(alg)} is not the key's algorithm")
    if typ.lower() not in typs:
        raise InvalidToken(f"typ {quoted(typ)} is not a {token_type.rsplit(':', 1)[-1]}")
    try:
        payload = jws.deserialize_compact(token, found[1], algorithms=[alg], registry=_REGISTRY).payload
    except (JoseError, ValueError, TypeError):
        raise InvalidToken("signature does not verify") from None
    try:
        raw = msgspec.json.decode(payload)
        claims = msgspec.convert(raw, _Claims)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise InvalidToken("claims are not a JSON object of the right types") from None
    # RFC 9068 §4 / OIDC Core §3.1.3.7: iss MUST exactly match the issuer.
    if claims.iss != issuer:
        raise InvalidToken("iss is not this issuer")
    # RFC 7519 §4.1.4: MUST NOT be accepted on or after exp.
    if now >= claims.exp + leeway:
        raise InvalidToken("expired")
    if claims.nbf is not None and now + leeway < claims.nbf:
        raise InvalidToken("not yet valid (nbf)")
    aud = _audience(claims.aud)
    # RFC 9068 §4: the resource server MUST check aud names it.
    if audience is not None and set(aud).isdisjoint(audience):
        raise InvalidToken("aud does not name the expected audience")
    if token_type == ACCESS_TOKEN_TYPE:
        # RFC 9068 §2.2: jti and client_id are REQUIRED.
        if not claims.jti or not claims.client_id:
            raise InvalidToken("access token without jti or client_id")
        client_id: str | None = claims.client_id
        scope = tuple(s for s in (claims.scope or "").split(" ") if s)
    else:
        # OIDC Core §2: azp is the party the ID token was issued to; else the sole audience.
        client_id = claims.azp or (aud[0] if len(aud) == 1 else None)
        scope = ()  # an ID token states who the user is; it grants no scope
    return VerifiedToken(
        token_type=token_type,
        issuer=claims.iss,
        subject=claims.sub,
        audience=aud,
        expires_at=claims.exp,
        issued_at=claims.iat,
        client_id=client_id,
        scope=scope,
        jti=claims.jti,
        family_id=claims.fid,
        claims=raw,
    )


async def verify_access_token(
    source: Config | KeySet | Mapping[str, Any],
    token: str,
    *,
    audience: str | Iterable[str],
    issuer: str | None = None,
    store: AccessTokenStore | None = None,
    leeway: float = 0,
    now: float | None = None,
) -> VerifiedToken:
    """The resource-server check of an access token this server issued (RFC 9068 §4).

    ``source`` is the server's ``Config``, its ``KeySet``, or its published JWKS (a dict as
    served at ``jwks_uri``). ``issuer`` is required unless ``source`` is a ``Config``.
    ``audience`` is the identifier(s) of the API calling this; the token must name one.
    With a ``store`` (the server's, e.g. ``config.backend`` or the same Redis URL through
    ``open_store``), a revoked token or a token of a revoked family is refused too, and the
    store's ``StoreUnavailable`` propagates. Raises ``InvalidToken`` otherwise
    (RFC 6750 §3.1 ``invalid_token`` for the API's answer).
    """
    expected = (audience,) if isinstance(audience, str) else tuple(audience)
    if not expected:
        raise ValueError("verify_access_token needs the audience this API answers to")
    if isinstance(source, Config):
        keys = trusted_keys(source.keys)
        issuer = issuer or source.issuer
        at = now if now is not None else source.clock()
    else:
        keys = trusted_keys(source) if isinstance(source, KeySet) else _jwks_keys(msgspec.json.encode(source))
        at = now if now is not None else time.time()
    if not issuer:
        raise ValueError("verify_access_token needs the issuer unless given a Config")
    verified = verify_jwt(
        keys, token, token_type=ACCESS_TOKEN_TYPE, issuer=issuer, now=at, audience=expected, leeway=leeway
    )
    # RFC 7009 §2: once revoked, the token must be refused by an API that checks (same store).
    # The family is the verified token's own signed fid, never read before the signature check.
    if (
        store is not None
        and verified.jti is not None
        and await store.access_token_revoked(verified.jti, verified.family_id)
    ):
        raise InvalidToken("revoked, or its family was revoked")
    return verified

"""The data that crosses boundaries: frozen, keyword-only msgspec Structs.

``Client`` is the registration; ``TokenRequest`` is what the adapter hands the core;
``Issued`` / ``Denied`` are what the core returns. The store records (``CodeRecord``,
``RefreshRecord``) and the store's result types live here too, so a backend needs only
this module and ``attesto_asgi.store``.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from msgspec.structs import force_setattr

from ._secrets import hash_client_secret, is_hashed_secret, usable_hashed_secret
from .errors import OAuthError
from .events import Event

__all__ = [
    "AUTH_METHODS",
    "AlreadyRotated",
    "Client",
    "CodeRecord",
    "CodeReused",
    "Denied",
    "FamilyRevoked",
    "Introspected",
    "Issued",
    "PresentedToken",
    "RefreshRecord",
    "RefreshUnknown",
    "Revoked",
    "Rotated",
    "TokenRequest",
    "VerifiedToken",
]

AUTH_METHODS: Final = (
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
)
_SECRET_METHODS: Final = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})


class _Hidden:
    """Holds a value that must never show up in a repr or a log line."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<hidden>"


class Client(msgspec.Struct, frozen=True, kw_only=True):
    """A registered client.

    ``client_secret`` may be given in the clear or already hashed (``blake2s$...``, or the
    earlier ``hmac-sha256$...``; see ``attesto_asgi.hash_client_secret``); after
    construction it always holds the hash.
    A ``client_secret_jwt`` client's secret is an HMAC key the server must keep
    (RFC 7523 §2.2 / OIDC Core §9), so for that method it must be given in the clear and
    is kept in a hidden holder, never in a repr.
    """

    client_id: str
    client_secret: str | None = None
    token_endpoint_auth_method: str = "client_secret_basic"
    # RFC 7523: algorithms pinned by registration. None: the algorithms of the client's
    # JWKS keys (private_key_jwt) or HS256 (client_secret_jwt).
    token_endpoint_auth_signing_alg: str | None = None
    jwks: dict[str, Any] | None = None
    grant_types: tuple[str, ...] = ("authorization_code",)
    redirect_uris: tuple[str, ...] = ()
    scope: tuple[str, ...] = ()
    # Omitted scope (RFC 6749 §3.3 "pre-defined default value"); None: all of ``scope``.
    default_scope: tuple[str, ...] | None = None
    # Resource indicators / audiences this client may ask tokens for (RFC 8707).
    audiences: tuple[str, ...] = ()
    require_pkce: bool = True
    id_token_signed_response_alg: str | None = None
    may_introspect: bool = False
    access_token_ttl: int | None = None
    refresh_token_ttl: int | None = None
    refresh_family_ttl: int | None = None
    _jwt_secret: _Hidden | None = None

    def __post_init__(self) -> None:
        method = self.token_endpoint_auth_method
        if method not in AUTH_METHODS:
            raise ValueError(f"client {self.client_id!r}: unknown token_endpoint_auth_method {method!r}")
        if method in _SECRET_METHODS and not self.client_secret:
            raise ValueError(f"client {self.client_id!r}: {method} needs a client_secret")
        if method == "private_key_jwt" and not self.jwks:
            raise ValueError(f"client {self.client_id!r}: private_key_jwt needs jwks")
        if method == "none" and self.client_secret:
            raise ValueError(f"client {self.client_id!r}: a public client has no secret")
        secret = self.client_secret
        if secret is not None and not is_hashed_secret(secret):
            if method == "client_secret_jwt" and self._jwt_secret is None:
                force_setattr(self, "_jwt_secret", _Hidden(secret.encode("utf-8")))
            force_setattr(self, "client_secret", hash_client_secret(secret))
        else:
            if method == "client_secret_jwt" and self._jwt_secret is None:
                raise ValueError(f"client {self.client_id!r}: client_secret_jwt needs the secret in the clear")
            if secret is not None and not usable_hashed_secret(secret):
                raise ValueError(f"client {self.client_id!r}: client_secret is a malformed hash")

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def jwt_secret(self) -> bytes | None:
        return self._jwt_secret.value if self._jwt_secret is not None else None


class TokenRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A token request as plain data: the authenticated client and the form parameters.

    ``params`` holds the single-valued parameters (empty values already dropped, RFC 6749
    §3.1); ``resource`` (RFC 8707) and ``audience`` (RFC 8693) are the multi-valued ones.
    """

    client: Client
    grant_type: str
    params: dict[str, str] = {}
    resource: tuple[str, ...] = ()
    audience: tuple[str, ...] = ()
    auth_method: str = "none"


class Issued(msgspec.Struct, frozen=True, kw_only=True):
    """Success: the RFC 6749 §5.1 body and the events the exchange produced."""

    body: dict[str, Any]
    events: tuple[Event, ...] = ()


class Denied(msgspec.Struct, frozen=True, kw_only=True):
    """Failure: the RFC 6749 §5.2 error and the events (at least ``token_denied``)."""

    error: OAuthError
    events: tuple[Event, ...] = ()


class PresentedToken(msgspec.Struct, frozen=True, kw_only=True):
    """A revocation (RFC 7009 §2.1) or introspection (RFC 7662 §2.1) request as plain data:
    the authenticated client, the ``token`` and the optional ``token_type_hint``."""

    client: Client
    token: str
    token_type_hint: str | None = None


class Revoked(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 7009 §2.2: the revocation request was handled (200, empty body), whether or not
    the token existed; ``events`` records what was actually revoked."""

    events: tuple[Event, ...] = ()


class Introspected(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 7662 §2.2: the introspection response body (``active`` and, when true, the
    token's metadata) and the events."""

    body: dict[str, Any]
    events: tuple[Event, ...] = ()


class VerifiedToken(msgspec.Struct, frozen=True, kw_only=True):
    """A token whose signature and claims were checked: ours (``verify_access_token``, the
    token-exchange subject and actor tokens) or another issuer's, vouched for by
    ``Hooks.verify_external_token``.

    ``token_type`` is the RFC 8693 §3 URI of what the token is; ``client_id`` is the client
    it was issued to (RFC 9068 ``client_id``, an ID token's ``azp``); ``family_id`` is the
    token family it belongs to (revoking the family makes it inactive), when it has one.
    ``claims`` is the whole verified payload.
    """

    token_type: str
    issuer: str
    subject: str
    audience: tuple[str, ...]
    expires_at: int
    issued_at: int | None = None
    client_id: str | None = None
    scope: tuple[str, ...] = ()
    jti: str | None = None
    family_id: str | None = None
    claims: dict[str, Any] = {}


# ---------------------------------------------------------------- store records


class CodeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An authorization code, keyed by ``token_hash(code)``; the code itself is never stored."""

    code_hash: str
    client_id: str
    redirect_uri: str
    subject: str
    scope: tuple[str, ...]
    family_id: str
    issued_at: float
    expires_at: float
    # The tombstone left by take_code is kept until this time (expiry plus a margin).
    reuse_detect_until: float
    auth_time: int | None = None
    nonce: str | None = None
    acr: str | None = None
    amr: tuple[str, ...] = ()
    sid: str | None = None
    claims: dict[str, Any] | None = None
    resource: tuple[str, ...] = ()
    code_challenge: str | None = None
    code_challenge_method: str | None = None


class CodeReused(msgspec.Struct, frozen=True, kw_only=True):
    """``take_code`` found the tombstone of a code already taken: the family to revoke."""

    family_id: str
    client_id: str


class RefreshRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A refresh token, keyed by ``(family_id, token_hash(token))``.

    ``expires_at`` slides with each rotation but never passes ``family_expires_at``.
    The rotation fields are set by the store when the token is rotated.
    """

    token_hash: str
    family_id: str
    client_id: str
    subject: str
    scope: tuple[str, ...]
    issued_at: float
    expires_at: float
    family_expires_at: float
    generation: int = 0
    resource: tuple[str, ...] = ()
    auth_time: int | None = None
    acr: str | None = None
    amr: tuple[str, ...] = ()
    sid: str | None = None
    rotated_at: float | None = None
    successor_hash: str | None = None
    sealed_successor: bytes | None = None


class Rotated(msgspec.Struct, frozen=True, kw_only=True):
    """``rotate_refresh`` won: ``record`` is the presented token as it was before rotation."""

    record: RefreshRecord


class AlreadyRotated(msgspec.Struct, frozen=True, kw_only=True):
    """The presented token was rotated before: ``record`` carries the rotation fields;
    ``successor_used`` says whether its successor has itself been rotated since."""

    record: RefreshRecord
    successor_used: bool


class RefreshUnknown(msgspec.Struct, frozen=True, kw_only=True):
    """No such token (never issued, or expired and dropped)."""


class FamilyRevoked(msgspec.Struct, frozen=True, kw_only=True):
    """The token's family was revoked: never honoured."""

    family_id: str

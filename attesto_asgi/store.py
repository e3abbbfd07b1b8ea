"""The ``Store`` protocol, its narrow per-flow slices, and ``open_store`` by entry point.

Every operation is atomic on its own: no caller ever does read-then-write across two
calls. Everything is keyed by a hash of the secret. Every record carries its expiry and
backends drop expired records themselves. A backend that cannot be reached raises
``StoreUnavailable`` (the endpoint answers 503 ``temporarily_unavailable``).

Backends register a factory ``(url: str) -> Store`` under the entry-point group
``attesto_asgi.stores`` with the URL scheme as the name (``memory``, ``sqlite``,
``redis``, ``rediss``). Prove a backend with ``attesto_asgi.testing.StoreContract``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from .model import (
    AlreadyRotated,
    CodeRecord,
    CodeReused,
    FamilyRevoked,
    RefreshRecord,
    RefreshUnknown,
    Rotated,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "AccessTokenStore",
    "CodeStore",
    "FamilyStore",
    "RefreshStore",
    "ReplayCache",
    "RotateResult",
    "Store",
    "installed_backends",
    "open_store",
]

log = logging.getLogger("attesto_asgi.store")

ENTRY_POINT_GROUP = "attesto_asgi.stores"

RotateResult = Rotated | AlreadyRotated | RefreshUnknown | FamilyRevoked


class ReplayCache(Protocol):
    async def claim_once(self, key: str, ttl: float) -> bool:
        """True the first time ``key`` is claimed within ``ttl`` seconds, False after."""
        ...


class FamilyStore(Protocol):
    async def revoke_family(self, family_id: str, until: float) -> bool:
        """Mark the family revoked until ``until`` (epoch seconds). Idempotent and sticky:
        True when this call revoked it, False when it already was."""
        ...

    async def family_revoked(self, family_id: str) -> bool: ...


class AccessTokenStore(Protocol):
    """Access tokens are never stored when issued: a family-bound token carries its family
    in the signed claim ``fid``, so revoking the family reaches it without a jti index."""

    async def revoke_access_token(self, jti: str, expires_at: float) -> None:
        """Record one access token revoked until its expiry."""
        ...

    async def access_token_revoked(self, jti: str, family_id: str | None) -> bool:
        """True when ``jti`` was revoked (``revoke_access_token``), or when ``family_id`` is
        given and that family is revoked. ``family_id`` is the ``fid`` of a token whose
        signature was verified: never a value the caller could choose."""
        ...


class CodeStore(Protocol):
    async def put_code(self, record: CodeRecord) -> None: ...

    async def take_code(self, code_hash: str) -> CodeRecord | CodeReused | None:
        """Return the record exactly once and leave a tombstone (family id, client id)
        until ``record.reuse_detect_until``; a later take returns ``CodeReused``.
        None for an unknown or expired code."""
        ...


class RefreshStore(Protocol):
    async def put_refresh(self, record: RefreshRecord) -> bool:
        """Store a new refresh token. False (nothing stored) when its family is revoked."""
        ...

    async def get_refresh(self, family_id: str, token_hash: str) -> RefreshRecord | None:
        """Non-consuming, linearizable read (rotation fields included). None when unknown,
        expired, or when the family is revoked."""
        ...

    async def rotate_refresh(
        self, family_id: str, old_hash: str, successor: RefreshRecord, sealed: bytes | None
    ) -> RotateResult:
        """One compare-and-set: when ``old_hash`` is live and unrotated, mark it rotated
        (``rotated_at`` now, ``successor_hash``, ``sealed``) and store ``successor`` in
        the same step; answer ``Rotated``. Otherwise store nothing and answer
        ``FamilyRevoked`` (checked first), ``AlreadyRotated`` or ``RefreshUnknown``."""
        ...


@runtime_checkable
class Store(ReplayCache, FamilyStore, AccessTokenStore, CodeStore, RefreshStore, Protocol):
    """Everything a backend implements."""

    async def aclose(self) -> None: ...


StoreFactory = Callable[[str], Store]


def _factories() -> dict[str, StoreFactory]:
    found: dict[str, StoreFactory] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            factory = ep.load()
        except Exception:  # one broken plugin never breaks the rest
            log.exception("store backend %r (%s) failed to load; skipped", ep.name, ep.value)
            continue
        if not callable(factory):
            log.error("store backend %r (%s) is not callable; skipped", ep.name, ep.value)
            continue
        found.setdefault(ep.name, factory)
    return found


def installed_backends() -> list[str]:
    """The URL schemes of the store backends that load."""
    return sorted(_factories())


def open_store(url: str) -> Store:
    """Open the backend registered under the URL's scheme (``memory://``, ``sqlite:///x.db``,
    ``redis://127.0.0.1:6379/0``). Backends connect lazily on first use."""
    scheme = urlsplit(url).scheme
    factories = _factories()
    factory = factories.get(scheme)
    if factory is None:
        names = ", ".join(sorted(factories)) or "none"
        raise ValueError(f"no store backend for scheme {scheme!r}; installed: {names}")
    return factory(url)

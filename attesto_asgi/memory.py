"""In-memory ``Store``: for development and tests, one process only, nothing durable.

Each operation runs without an ``await`` between its read and its write, so it is atomic
with respect to every other coroutine on the event loop. Expired entries are dropped on
access and by a sweep every few thousand writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from .model import (
    AlreadyRotated,
    CodeRecord,
    CodeReused,
    FamilyRevoked,
    RefreshRecord,
    RefreshUnknown,
    Rotated,
)
from .store import RotateResult

__all__ = ["MemoryStore", "open_memory_store"]

log = logging.getLogger("attesto_asgi.memory")

_SWEEP_EVERY = 4096


class MemoryStore:
    """A ``Store`` in a few dicts. ``clock`` lets tests control time."""

    def __init__(self, *, clock: Callable[[], float] = time.time, warn: bool = True) -> None:
        if warn:
            log.warning(
                "MemoryStore keeps state in this process only: not durable, not shared "
                "between workers; use sqlite:// or redis:// in production"
            )
        self._clock = clock
        self._codes: dict[str, CodeRecord] = {}
        self._tombstones: dict[str, tuple[CodeReused, float]] = {}
        self._refresh: dict[tuple[str, str], RefreshRecord] = {}
        self._families: dict[str, float] = {}
        self._revoked_jtis: dict[str, float] = {}
        self._claims: dict[str, float] = {}
        self._writes = 0
        self._next_sweep = _SWEEP_EVERY

    # ------------------------------------------------------------- housekeeping
    def _wrote(self) -> None:
        self._writes += 1
        if self._writes >= self._next_sweep:
            self._sweep(self._clock())
            # A sweep walks every entry, so sweeps are at least as many writes apart as there
            # are entries left: sweeping costs O(1) per write however many tokens are live.
            self._next_sweep = self._writes + max(_SWEEP_EVERY, self._size())

    def _size(self) -> int:
        return (
            len(self._codes)
            + len(self._tombstones)
            + len(self._refresh)
            + len(self._families)
            + len(self._revoked_jtis)
            + len(self._claims)
        )

    def _sweep(self, now: float) -> None:
        def drop(d: dict[Any, Any], expiry: Callable[[Any], float]) -> None:
            for k in [k for k, v in d.items() if expiry(v) <= now]:
                del d[k]

        drop(self._codes, lambda r: r.expires_at)
        drop(self._tombstones, lambda v: v[1])
        drop(self._refresh, lambda r: r.expires_at)
        drop(self._families, lambda t: t)
        drop(self._revoked_jtis, lambda t: t)
        drop(self._claims, lambda t: t)

    def _live_family_revoked(self, family_id: str, now: float) -> bool:
        until = self._families.get(family_id)
        return until is not None and until > now

    # ------------------------------------------------------------- replay cache
    async def claim_once(self, key: str, ttl: float) -> bool:
        now = self._clock()
        until = self._claims.get(key)
        if until is not None and until > now:
            return False
        self._claims[key] = now + ttl
        self._wrote()
        return True

    # ------------------------------------------------------------- families
    async def revoke_family(self, family_id: str, until: float) -> bool:
        now = self._clock()
        was = self._live_family_revoked(family_id, now)
        self._families[family_id] = max(until, self._families.get(family_id, 0.0))
        self._wrote()
        return not was

    async def family_revoked(self, family_id: str) -> bool:
        return self._live_family_revoked(family_id, self._clock())

    # ------------------------------------------------------------- access tokens
    async def revoke_access_token(self, jti: str, expires_at: float) -> None:
        self._revoked_jtis[jti] = max(expires_at, self._revoked_jtis.get(jti, 0.0))
        self._wrote()

    async def access_token_revoked(self, jti: str, family_id: str | None) -> bool:
        now = self._clock()
        until = self._revoked_jtis.get(jti)
        if until is not None and until > now:
            return True
        return family_id is not None and self._live_family_revoked(family_id, now)

    # ------------------------------------------------------------- codes
    async def put_code(self, record: CodeRecord) -> None:
        self._codes[record.code_hash] = record
        self._wrote()

    async def take_code(self, code_hash: str) -> CodeRecord | CodeReused | None:
        now = self._clock()
        record = self._codes.pop(code_hash, None)
        if record is not None:
            if record.expires_at <= now:
                # Expired unused: it issued nothing, so it leaves no reuse report.
                return None
            self._tombstones[code_hash] = (
                CodeReused(family_id=record.family_id, client_id=record.client_id),
                record.reuse_detect_until,
            )
            self._wrote()
            return record
        tomb = self._tombstones.get(code_hash)
        if tomb is not None and tomb[1] > now:
            return tomb[0]
        return None

    # ------------------------------------------------------------- refresh tokens
    async def put_refresh(self, record: RefreshRecord) -> bool:
        if self._live_family_revoked(record.family_id, self._clock()):
            return False
        self._refresh[(record.family_id, record.token_hash)] = record
        self._wrote()
        return True

    async def get_refresh(self, family_id: str, token_hash: str) -> RefreshRecord | None:
        now = self._clock()
        if self._live_family_revoked(family_id, now):
            return None
        record = self._refresh.get((family_id, token_hash))
        if record is None or record.expires_at <= now:
            return None
        return record

    async def rotate_refresh(
        self, family_id: str, old_hash: str, successor: RefreshRecord, sealed: bytes | None
    ) -> RotateResult:
        now = self._clock()
        if self._live_family_revoked(family_id, now):
            return FamilyRevoked(family_id=family_id)
        record = self._refresh.get((family_id, old_hash))
        if record is None or record.expires_at <= now:
            return RefreshUnknown()
        if record.rotated_at is not None:
            nxt = self._refresh.get((family_id, record.successor_hash or ""))
            # An expired successor counts as used: it can no longer be handed out again.
            used = nxt is None or nxt.expires_at <= now or nxt.rotated_at is not None
            return AlreadyRotated(record=record, successor_used=used)
        self._refresh[(family_id, old_hash)] = msgspec.structs.replace(
            record, rotated_at=now, successor_hash=successor.token_hash, sealed_successor=sealed
        )
        self._refresh[(successor.family_id, successor.token_hash)] = successor
        self._wrote()
        return Rotated(record=record)

    async def aclose(self) -> None:
        return None


def open_memory_store(url: str) -> MemoryStore:
    """Entry point ``memory``: ``open_store("memory://")``."""
    return MemoryStore()

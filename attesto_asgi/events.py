"""Audit events, returned by the core as data and emitted by the adapter.

One table of names (documented in ``docs/events.md``). An event never carries a raw
token, code or secret: only identifiers (client id, subject, family id, ``jti``) and
internal reasons.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = [
    "CODE_REUSE_DETECTED",
    "EVENT_NAMES",
    "FAMILY_REVOKED",
    "REFRESH_ISSUED",
    "REFRESH_REUSE_DETECTED",
    "REFRESH_ROTATED",
    "TOKEN_DENIED",
    "TOKEN_EXCHANGED",
    "TOKEN_INTROSPECTED",
    "TOKEN_ISSUED",
    "TOKEN_REVOKED",
    "Event",
]

TOKEN_ISSUED: Final = "token_issued"
REFRESH_ISSUED: Final = "refresh_issued"
REFRESH_ROTATED: Final = "refresh_rotated"
TOKEN_EXCHANGED: Final = "token_exchanged"
TOKEN_DENIED: Final = "token_denied"
CODE_REUSE_DETECTED: Final = "code_reuse_detected"
REFRESH_REUSE_DETECTED: Final = "refresh_reuse_detected"
FAMILY_REVOKED: Final = "family_revoked"
TOKEN_REVOKED: Final = "token_revoked"
TOKEN_INTROSPECTED: Final = "token_introspected"

EVENT_NAMES: Final = frozenset(
    {
        TOKEN_ISSUED,
        REFRESH_ISSUED,
        REFRESH_ROTATED,
        TOKEN_EXCHANGED,
        TOKEN_DENIED,
        CODE_REUSE_DETECTED,
        REFRESH_REUSE_DETECTED,
        FAMILY_REVOKED,
        TOKEN_REVOKED,
        TOKEN_INTROSPECTED,
    }
)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One audit event. ``data`` holds identifiers and reasons, never a secret."""

    name: str
    at: float
    client_id: str | None = None
    grant_type: str | None = None
    subject: str | None = None
    scope: tuple[str, ...] = ()
    data: dict[str, Any] = {}

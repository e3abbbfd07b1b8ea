"""Scope and resource syntax: tiny pure functions."""

from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit

from ..errors import INVALID_SCOPE, INVALID_TARGET, OAuthError

__all__ = ["check_resources", "format_scope", "narrow_scope", "parse_scope"]

# RFC 6749 §3.3: scope = scope-token *( SP scope-token ); scope-token = 1*NQCHAR
_SCOPE = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*")


def parse_scope(value: str | None) -> tuple[str, ...] | None:
    """The requested scope tokens in order, duplicates dropped; None when omitted."""
    if value is None:
        return None
    return _parse_scope(value)


@functools.lru_cache(maxsize=1024)  # clients repeat a handful of scope strings; errors are not cached
def _parse_scope(value: str) -> tuple[str, ...]:
    if not _SCOPE.fullmatch(value):
        raise OAuthError(INVALID_SCOPE, "The scope parameter is malformed.", detail="scope syntax (RFC 6749 §3.3)")
    return tuple(dict.fromkeys(value.split(" ")))


def format_scope(scope: tuple[str, ...]) -> str:
    return " ".join(scope)


def narrow_scope(requested: tuple[str, ...] | None, granted: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 6749 §6: the requested scope MUST NOT include any scope not originally granted;
    omitted means the original scope."""
    if requested is None:
        return granted
    extra = set(requested).difference(granted)
    if extra:
        raise OAuthError(INVALID_SCOPE, detail=f"scope wider than granted: {sorted(extra)}")
    return requested


def check_resources(resources: tuple[str, ...]) -> None:
    """RFC 8707 §2: a resource MUST be an absolute URI and MUST NOT include a fragment."""
    for r in resources:
        parts = urlsplit(r)
        if not parts.scheme or "#" in r or (parts.scheme in ("http", "https") and not parts.netloc):
            raise OAuthError(
                INVALID_TARGET, "The resource parameter is invalid.", detail="resource not an absolute URI"
            )

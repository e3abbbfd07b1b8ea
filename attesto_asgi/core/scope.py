"""Scope and resource syntax: tiny pure functions."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import INVALID_SCOPE, INVALID_TARGET, OAuthError

if TYPE_CHECKING:
    from ..model import Client

__all__ = [
    "check_resources",
    "client_scope",
    "format_scope",
    "narrow_scope",
    "offline_access_granted",
    "parse_scope",
]

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


def client_scope(client: Client, requested: tuple[str, ...] | None) -> tuple[str, ...]:
    """``Hooks.authorize_scope``'s default: an omitted scope is the client's default scope
    (RFC 6749 §3.3 "pre-defined default value"); a requested scope must be a subset of the
    client's allowed scopes, else ``invalid_scope``."""
    if requested is None:
        return client.default_scope if client.default_scope is not None else client.scope
    # RFC 6749 §3.3: the server may fully or partially ignore the requested scope; we refuse.
    extra = set(requested).difference(client.scope)
    if extra:
        raise OAuthError(INVALID_SCOPE, detail=f"scope not allowed for client: {sorted(extra)}")
    return requested


def offline_access_granted(scope: tuple[str, ...]) -> bool:
    """``Hooks.issue_refresh_token``'s default, OIDC Core §11: a refresh token with
    ``offline_access``, or for a request that is not OpenID Connect (no ``openid``)."""
    return "offline_access" in scope or "openid" not in scope


def check_resources(resources: tuple[str, ...]) -> None:
    """RFC 8707 §2: a resource MUST be an absolute URI and MUST NOT include a fragment."""
    for r in resources:
        try:
            parts = urlsplit(r)
        except ValueError:  # e.g. "http://[": a malformed IPv6 host
            parts = None
        if parts is None or not parts.scheme or "#" in r or (parts.scheme in ("http", "https") and not parts.netloc):
            raise OAuthError(
                INVALID_TARGET, "The resource parameter is invalid.", detail="resource not an absolute URI"
            )

"""OAuth error codes and the one exception type that carries them.

Errors are data: ``OAuthError`` holds the RFC 6749 §5.2 ``error`` code, the client-facing
``description`` (safe to send) and a ``detail`` that is only ever logged or put in an
audit event's internal reason. The HTTP status follows from the code.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "ACCESS_DENIED",
    "INVALID_CLIENT",
    "INVALID_GRANT",
    "INVALID_REQUEST",
    "INVALID_SCOPE",
    "INVALID_TARGET",
    "SERVER_ERROR",
    "TEMPORARILY_UNAVAILABLE",
    "UNAUTHORIZED_CLIENT",
    "UNSUPPORTED_GRANT_TYPE",
    "UNSUPPORTED_TOKEN_TYPE",
    "OAuthError",
    "StoreUnavailable",
]

# RFC 6749 §5.2
INVALID_REQUEST: Final = "invalid_request"
INVALID_CLIENT: Final = "invalid_client"
INVALID_GRANT: Final = "invalid_grant"
UNAUTHORIZED_CLIENT: Final = "unauthorized_client"
UNSUPPORTED_GRANT_TYPE: Final = "unsupported_grant_type"
INVALID_SCOPE: Final = "invalid_scope"
# RFC 6749 §4.1.2.1
ACCESS_DENIED: Final = "access_denied"
SERVER_ERROR: Final = "server_error"
TEMPORARILY_UNAVAILABLE: Final = "temporarily_unavailable"
# RFC 8707 §2
INVALID_TARGET: Final = "invalid_target"
# RFC 7009 §2.2.1
UNSUPPORTED_TOKEN_TYPE: Final = "unsupported_token_type"

# A value a client sent, safe to quote in a detail (logged, and put in an audit event's
# reason): a URN, or a short word such as a grant type or an algorithm name. Anything else
# (a misplaced token, code or secret) is described by its length, never quoted.
_QUOTABLE: Final = re.compile(r"urn:[A-Za-z0-9:._-]{1,120}|[A-Za-z0-9_.-]{1,20}")


def quoted(value: object) -> str:
    """``value`` quoted for a detail when it is a URN or a short word, else its length."""
    if isinstance(value, str) and _QUOTABLE.fullmatch(value):
        return repr(value)
    return f"<{len(value)} characters>" if isinstance(value, str) else f"<{type(value).__name__}>"


_STATUS: Final[dict[str, int]] = {
    INVALID_CLIENT: 401,
    TEMPORARILY_UNAVAILABLE: 503,
    SERVER_ERROR: 500,
}

# Client-facing text for each code when the raiser gives none.
_DEFAULT_DESCRIPTION: Final[dict[str, str]] = {
    INVALID_REQUEST: "The request is missing a parameter or is malformed.",
    INVALID_CLIENT: "Client authentication failed.",
    INVALID_GRANT: "The grant is invalid, expired or revoked.",
    UNAUTHORIZED_CLIENT: "The client is not authorized to use this grant type.",
    UNSUPPORTED_GRANT_TYPE: "The grant type is not supported.",
    INVALID_SCOPE: "The requested scope is invalid or exceeds what was granted.",
    INVALID_TARGET: "The requested resource or audience is not allowed.",
    TEMPORARILY_UNAVAILABLE: "The service is temporarily unavailable.",
    SERVER_ERROR: "The server could not complete the request.",
    ACCESS_DENIED: "Access denied.",
    UNSUPPORTED_TOKEN_TYPE: "The token type is not supported.",
}


# RFC 6749 §5.2: error_description "MUST NOT include characters outside the set %x20-21 /
# %x23-5B / %x5D-7E" (printable ASCII but '"' and '\').
_NOT_DESCRIPTION_CHAR: Final = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def _description(text: str) -> str:
    """``text`` with every character RFC 6749 §5.2 forbids in a description made ``?``."""
    return _NOT_DESCRIPTION_CHAR.sub("?", text)


_EXCEPTION_ATTRS: Final = frozenset({"__notes__", "__traceback__", "__cause__", "__context__", "__suppress_context__"})


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: ``error`` code, client-facing ``description``, logged ``detail``.

    It is an exception so hooks and ``issue_code`` can raise it, and it is immutable data
    so the core can return it inside ``Denied``.
    """

    __slots__ = ("description", "detail", "error", "headers", "status")

    error: str
    description: str
    detail: str
    status: int
    headers: tuple[tuple[str, str], ...]

    def __init__(
        self,
        error: str,
        description: str | None = None,
        *,
        detail: str | None = None,
        status: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        desc = _description(description) if description is not None else _DEFAULT_DESCRIPTION.get(error, "")
        object.__setattr__(self, "error", error)
        object.__setattr__(self, "description", desc)
        object.__setattr__(self, "detail", detail if detail is not None else desc)
        object.__setattr__(self, "status", status if status is not None else _STATUS.get(error, 400))
        object.__setattr__(self, "headers", headers)
        super().__init__(error, desc)

    def __setattr__(self, name: str, value: object) -> None:
        # The exception machinery's own attributes stay writable: ``add_note`` (PEP 678) sets
        # ``__notes__``, and pytest, hypothesis and anyio's task groups call it.
        if name in _EXCEPTION_ATTRS:
            super().__setattr__(name, value)
            return
        raise AttributeError("OAuthError is immutable")

    def __repr__(self) -> str:
        return f"OAuthError({self.error!r}, {self.description!r}, detail={self.detail!r})"

    def body(self) -> dict[str, str]:
        """The RFC 6749 §5.2 JSON body: the code and the client-facing text only."""
        out = {"error": self.error}
        if self.description:
            out["error_description"] = self.description
        return out


class StoreUnavailable(Exception):
    """The store could not be reached. Surfaces as 503 ``temporarily_unavailable``.

    A backend raises it when the operation's outcome is *not* applied (or cannot be
    known to be applied); the core then issues nothing.
    """

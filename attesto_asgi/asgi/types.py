"""The ASGI callables' types, spelled once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["ASGIApp", "AnyASGIApp", "Message", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# What the middleware wraps: any ASGI callable, whatever its framework calls the scope type
# (Litestar and Starlette use their own TypedDicts, which a MutableMapping parameter rejects).
AnyASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

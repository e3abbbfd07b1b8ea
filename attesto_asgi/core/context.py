"""The per-request context a grant receives: config, the time, and the event list."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..events import Event
from ..model import TokenRequest
from .policy import Policy

__all__ = ["Context"]


class Context:
    """What a grant's ``handle`` gets besides the request.

    ``now`` is read once per request so every claim in one response agrees. ``scope`` is
    the requested scope after the syntax check (None when omitted). ``policy`` asks the
    host's hooks (``Policy``: a hook the host kept is answered without a call). Grants
    append events through ``event``; the issuer returns them as data.
    """

    __slots__ = ("config", "events", "now", "policy", "request", "scope")

    def __init__(self, config: Config, request: TokenRequest, scope: tuple[str, ...] | None) -> None:
        self.config = config
        self.policy: Policy = config._policy
        self.request = request
        self.scope = scope
        self.now = config.clock()
        self.events: list[Event] = []

    def event(self, name: str, *, subject: str | None = None, scope: tuple[str, ...] = (), **data: Any) -> None:
        self.events.append(
            Event(
                name=name,
                at=self.now,
                client_id=self.request.client.client_id,
                grant_type=self.request.grant_type,
                subject=subject,
                scope=scope,
                data=data,
            )
        )

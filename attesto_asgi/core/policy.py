"""``Policy``: the host's ``Hooks`` as the core asks them, prepared once with the ``Config``.

A host overrides the hooks it needs and keeps the others (docs/hooks.md). A kept hook's
answer is its documented default, so the core gives that answer itself, in compiled code,
instead of awaiting a call into the interpreted ``Hooks`` class: four or five such calls
were part of every token request (1.3% of a code redemption's instructions, 1.9% of a
rotation's, compiled; CHANGELOG). A hook the host overrides, in a subclass or on the
instance before the ``Config`` is built, is always called. ``on_event`` (the
middleware's), ``authorize_exchange`` and ``verify_external_token`` are asked through
``Config.hooks`` directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..hooks import Hooks
from ..model import Client
from .scope import client_scope, offline_access_granted

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Policy", "overrides"]


def overrides(hooks: Hooks, name: str) -> bool:
    """Whether ``hooks`` answers hook ``name`` otherwise than ``Hooks`` does: a subclass's
    method, or a function set on the instance."""
    own: dict[str, Any] = getattr(hooks, "__dict__", {})
    return name in own or getattr(type(hooks), name) is not getattr(Hooks, name)


class Policy:
    """Each method answers as the same-named hook of ``hooks`` does."""

    __slots__ = (
        "_access_token_claims",
        "_authorize_scope",
        "_clients",
        "_id_token_claims",
        "_issue_refresh_token",
        "_load_client",
        "_subject_active",
        "hooks",
    )

    def __init__(self, hooks: Hooks, clients: Mapping[str, Client]) -> None:
        self.hooks = hooks
        self._clients = clients
        self._load_client = overrides(hooks, "load_client")
        self._authorize_scope = overrides(hooks, "authorize_scope")
        self._access_token_claims = overrides(hooks, "access_token_claims")
        self._id_token_claims = overrides(hooks, "id_token_claims")
        self._issue_refresh_token = overrides(hooks, "issue_refresh_token")
        self._subject_active = overrides(hooks, "subject_active")

    async def load_client(self, config: Config, client_id: str) -> Client | None:
        if self._load_client:
            return await self.hooks.load_client(config, client_id)
        return self._clients.get(client_id)  # Hooks.load_client: Config.clients

    async def authorize_scope(
        self, client: Client, requested: tuple[str, ...] | None, *, grant_type: str, subject: str | None = None
    ) -> tuple[str, ...]:
        if self._authorize_scope:
            return await self.hooks.authorize_scope(client, requested, grant_type=grant_type, subject=subject)
        return client_scope(client, requested)

    async def access_token_claims(self, client: Client, subject: str, scope: tuple[str, ...]) -> Mapping[str, Any]:
        if self._access_token_claims:
            return await self.hooks.access_token_claims(client, subject, scope)
        return {}

    async def id_token_claims(
        self, client: Client, subject: str, scope: tuple[str, ...], requested_claims: Mapping[str, Any] | None
    ) -> Mapping[str, Any]:
        if self._id_token_claims:
            return await self.hooks.id_token_claims(client, subject, scope, requested_claims)
        return {}

    async def issue_refresh_token(self, client: Client, scope: tuple[str, ...]) -> bool:
        if self._issue_refresh_token:
            return await self.hooks.issue_refresh_token(client, scope)
        return offline_access_granted(scope)

    async def subject_active(self, subject: str) -> bool:
        if self._subject_active:
            return await self.hooks.subject_active(subject)
        return True

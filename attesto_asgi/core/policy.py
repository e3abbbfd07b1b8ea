"""``Policy``: the host's ``Hooks`` as the core asks them, prepared once with the ``Config``.

A host overrides the hooks it needs and keeps the others (docs/hooks.md). A kept hook's
answer is its documented default, so the core gives that answer itself, in compiled code,
instead of awaiting a call into the interpreted ``Hooks`` class: four or five such calls
were part of every token request (1.7% of a code redemption's instructions, 3.0% of a
rotation's, compiled; CHANGELOG). A hook the host overrides, in a subclass or on the
instance before the ``Config`` is built, is always called. ``on_event`` (the
middleware's), ``authorize_exchange`` and ``verify_external_token`` are asked through
``Config.hooks`` directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ..hooks import Hooks
from ..model import Client
from .scope import client_scope

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Policy", "overrides"]


def overrides(hooks: Hooks, name: str) -> bool:
    """Whether ``hooks`` answers hook ``name`` otherwise than ``Hooks`` does: a subclass's
    method, or a function set on the instance."""
    own: dict[str, Any] = getattr(hooks, "__dict__", {})
    return name in own or getattr(type(hooks), name) is not getattr(Hooks, name)


class Policy:
    """Each method answers as the same-named hook of ``hooks`` does.

    ``asks_<hook>`` is true when the host overrides that hook. The token path's own call
    sites test it and then call the host's hook (``hooks``) or, when false, answer with the
    default directly (``registered_client``, ``client_scope``, ``offline_access_granted``,
    no extra claims, an active subject): an awaited call costs more time than its
    instructions on some CPUs, even compiled (benchmarks/README.md, "Compiled and pure").
    The async methods serve the other call sites (client authentication's client lookup,
    the authorization endpoint's, introspection's, token exchange's). ``access_token_claims``,
    ``id_token_claims`` and ``issue_refresh_token`` have only their flag: one call site
    each (``tokens.mint_access_token``, ``id_token.mint_id_token``,
    ``authorization_code.first_refresh_token``), tested against ``Hooks`` by
    tests/core/test_policy.py.
    """

    __slots__ = (
        "_clients",
        "asks_access_token_claims",
        "asks_authorize_scope",
        "asks_id_token_claims",
        "asks_issue_refresh_token",
        "asks_load_client",
        "asks_subject_active",
        "hooks",
    )

    def __init__(self, hooks: Hooks, clients: Mapping[str, Client]) -> None:
        self.hooks = hooks
        self._clients = clients
        self.asks_load_client: Final = overrides(hooks, "load_client")
        self.asks_authorize_scope: Final = overrides(hooks, "authorize_scope")
        self.asks_access_token_claims: Final = overrides(hooks, "access_token_claims")
        self.asks_id_token_claims: Final = overrides(hooks, "id_token_claims")
        self.asks_issue_refresh_token: Final = overrides(hooks, "issue_refresh_token")
        self.asks_subject_active: Final = overrides(hooks, "subject_active")

    def registered_client(self, client_id: str) -> Client | None:
        """``Hooks.load_client``'s default: the client from ``Config.clients``."""
        return self._clients.get(client_id)

    async def load_client(self, config: Config, client_id: str) -> Client | None:
        if self.asks_load_client:
            return await self.hooks.load_client(config, client_id)
        return self.registered_client(client_id)

    async def authorize_scope(
        self, client: Client, requested: tuple[str, ...] | None, *, grant_type: str, subject: str | None = None
    ) -> tuple[str, ...]:
        if self.asks_authorize_scope:
            return await self.hooks.authorize_scope(client, requested, grant_type=grant_type, subject=subject)
        return client_scope(client, requested)

    async def subject_active(self, subject: str) -> bool:
        if self.asks_subject_active:
            return await self.hooks.subject_active(subject)
        return True

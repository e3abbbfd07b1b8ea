"""``Hooks``: host policy with safe defaults. Subclass and override what you need.

Every hook is async so it may consult a database. A hook denies by raising ``OAuthError``
(or returning False where it answers a yes/no question). Defaults are the conservative
reading of the RFCs; each says which.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .core.scope import client_scope, offline_access_granted
from .errors import INVALID_TARGET, OAuthError
from .events import Event
from .model import Client, VerifiedToken

if TYPE_CHECKING:
    from .config import Config

__all__ = ["Hooks"]

log = logging.getLogger("attesto_asgi.events")


class Hooks:
    """Host policy. The base class is usable as is."""

    async def load_client(self, config: Config, client_id: str) -> Client | None:
        """The registered client, or None. Default: ``Config.clients``."""
        return config.client(client_id)

    async def authorize_scope(
        self,
        client: Client,
        requested: tuple[str, ...] | None,
        *,
        grant_type: str,
        subject: str | None = None,
    ) -> tuple[str, ...]:
        """The scope to grant. Default: an omitted scope is the client's default scope
        (RFC 6749 §3.3 "pre-defined default value"); a requested scope must be a subset of
        the client's allowed scopes, else ``invalid_scope``."""
        return client_scope(client, requested)

    async def access_token_claims(self, client: Client, subject: str, scope: tuple[str, ...]) -> Mapping[str, Any]:
        """Extra claims for an access token. A claim with a name the server reserves
        (``AT_RESERVED_CLAIMS``: ``iss sub aud exp iat nbf jti client_id scope auth_time acr
        amr act cnf fid``) is dropped, also when this token leaves that claim out."""
        return {}

    async def id_token_claims(
        self,
        client: Client,
        subject: str,
        scope: tuple[str, ...],
        requested_claims: Mapping[str, Any] | None,
    ) -> Mapping[str, Any]:
        """Extra ID-token claims (OIDC Core §5.4 scope claims, §5.5 ``claims`` request's
        ``id_token`` member). A claim colliding with a reserved one fails the request."""
        return {}

    async def issue_refresh_token(self, client: Client, scope: tuple[str, ...]) -> bool:
        """Whether the first refresh token is issued (the client already has the
        refresh_token grant). Default, OIDC Core §11: when ``offline_access`` was granted,
        or for a non-OIDC request (no ``openid``)."""
        return offline_access_granted(scope)

    async def subject_active(self, subject: str) -> bool:
        """False for a disabled or deleted user: their codes and refresh tokens stop working."""
        return True

    async def authorize_exchange(
        self,
        client: Client,
        subject: VerifiedToken,
        actor: VerifiedToken | None,
        audience: tuple[str, ...],
        scope: tuple[str, ...],
    ) -> bool:
        """Whether ``client`` may exchange ``subject`` (RFC 8693), acting as ``actor`` when
        given (delegation) or else in the subject's name (impersonation), for a token with
        ``audience`` and ``scope``. False is ``invalid_request`` (RFC 8693 §2.2.2); raise
        ``OAuthError`` for another answer.

        Default (against confused deputies, LESSONS: Keycloak CVE-2022-1245): the subject
        token was issued for an audience the client serves (its ``client_id`` or one of its
        ``audiences``); an actor token was issued to the client itself; and every audience of
        the new token is one of the client's ``audiences`` (else ``invalid_target``)."""
        serves = {client.client_id, *client.audiences}
        if serves.isdisjoint(subject.audience):
            return False
        if actor is not None and actor.client_id != client.client_id:
            return False
        outside = set(audience).difference(client.audiences)
        if outside:
            # RFC 8693 §2.2.2: unwilling to issue a token for the target service: invalid_target.
            raise OAuthError(INVALID_TARGET, detail=f"exchange audience not allowed for client: {sorted(outside)}")
        return True

    async def verify_external_token(self, client: Client, token: str, token_type: str) -> VerifiedToken | None:
        """Verify a subject or actor token of type ``urn:ietf:params:oauth:token-type:jwt``
        (RFC 8693 §3) from another issuer, and describe it as a ``VerifiedToken``; None
        refuses it (``invalid_request``). Check its signature against that issuer's keys,
        its ``iss``, ``aud`` and ``exp`` yourself. Default: accept none."""
        return None

    async def on_event(self, event: Event) -> None:
        """Receives every audit event after the response is decided. Default: log it."""
        log.info("%s client=%s subject=%s data=%s", event.name, event.client_id, event.subject, event.data)

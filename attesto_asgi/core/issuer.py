"""``issue(config, request)``: the token endpoint's decisions as a checklist of named steps.

Plain data in (``TokenRequest``), plain data out (``Issued`` or ``Denied``, each with the
audit events). This module never sees an ASGI scope and never emits an event.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Final

from ..config import Config
from ..errors import (
    SERVER_ERROR,
    TEMPORARILY_UNAVAILABLE,
    UNAUTHORIZED_CLIENT,
    UNSUPPORTED_GRANT_TYPE,
    OAuthError,
    StoreUnavailable,
    quoted,
)
from ..events import TOKEN_DENIED
from ..model import Denied, Issued, TokenRequest
from .context import Context
from .grants import authorization_code, client_credentials, refresh_token, token_exchange
from .scope import check_resources, parse_scope
from .tokens import MintError

__all__ = ["GRANTS", "RETRY_AFTER_SECONDS", "as_oauth_error", "issue", "store_unavailable_error"]

log = logging.getLogger("attesto_asgi.issuer")

GRANTS: Final[dict[str, ModuleType]] = {
    authorization_code.GRANT_TYPE: authorization_code,
    client_credentials.GRANT_TYPE: client_credentials,
    refresh_token.GRANT_TYPE: refresh_token,
    token_exchange.GRANT_TYPE: token_exchange,
}

RETRY_AFTER_SECONDS: Final = 5


def store_unavailable_error(exc: StoreUnavailable) -> OAuthError:
    """DESIGN §3: a store that cannot be reached is 503 ``temporarily_unavailable`` with ``Retry-After``."""
    return OAuthError(
        TEMPORARILY_UNAVAILABLE,
        detail=f"store unavailable: {exc.__class__.__name__}",
        headers=(("retry-after", str(RETRY_AFTER_SECONDS)),),
    )


def as_oauth_error(exc: Exception, during: str) -> OAuthError:
    """The answer to a failure inside the core: the step's own ``OAuthError``; a mint failure
    is ``invalid_request`` (DESIGN §3, reason logged); an unreachable store is 503; anything
    else is a logged ``server_error``, never a traceback to the client."""
    if isinstance(exc, OAuthError):
        return exc
    if isinstance(exc, MintError):
        return exc.to_oauth()
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable during %s: %s", during, exc)
        return store_unavailable_error(exc)
    log.error("unexpected failure during %s", during, exc_info=exc)
    return OAuthError(SERVER_ERROR, detail="unexpected failure")


def grant_supported(request: TokenRequest) -> ModuleType:
    grant = GRANTS.get(request.grant_type)
    if grant is None:
        # RFC 6749 §5.2 unsupported_grant_type: not supported by the authorization server.
        raise OAuthError(UNSUPPORTED_GRANT_TYPE, detail=f"grant_type {quoted(request.grant_type)}")
    return grant


def grant_allowed_for_client(request: TokenRequest) -> None:
    # RFC 6749 §5.2 unauthorized_client: not authorized to use this authorization grant type.
    if request.grant_type not in request.client.grant_types:
        raise OAuthError(UNAUTHORIZED_CLIENT, detail=f"client lacks grant {request.grant_type}")


def confidential_client_if_required(grant: ModuleType, request: TokenRequest) -> None:
    if grant.CONFIDENTIAL_ONLY and request.client.is_public:
        raise OAuthError(UNAUTHORIZED_CLIENT, detail=f"{request.grant_type} needs a confidential client")


def requested_scope(request: TokenRequest) -> tuple[str, ...] | None:
    return parse_scope(request.params.get("scope"))


def resources_well_formed(request: TokenRequest) -> None:
    check_resources(request.resource)


def _denied(config: Config, request: TokenRequest, error: OAuthError, ctx: Context | None) -> Denied:
    ctx = ctx or Context(config, request, None)
    ctx.event(TOKEN_DENIED, error=error.error, reason=error.detail)
    return Denied(error=error, events=tuple(ctx.events))


async def issue(config: Config, request: TokenRequest) -> Issued | Denied:
    """Process one token request for an already authenticated client."""
    ctx: Context | None = None
    try:
        grant = grant_supported(request)
        grant_allowed_for_client(request)
        confidential_client_if_required(grant, request)
        scope = requested_scope(request)
        resources_well_formed(request)
        ctx = Context(config, request, scope)
        body = await grant.handle(ctx, request)
        return Issued(body=body, events=tuple(ctx.events))
    except Exception as exc:
        return _denied(config, request, as_oauth_error(exc, f"the {request.grant_type} grant"), ctx)

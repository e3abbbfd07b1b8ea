"""RFC 6749 §4.4: the client credentials grant. The client acts on its own behalf."""

from __future__ import annotations

from typing import Any, Final

from ...events import TOKEN_ISSUED
from ...model import TokenRequest
from ..context import Context
from ..scope import client_scope
from ..tokens import mint_access_token, resolve_audience, token_response

__all__ = ["CONFIDENTIAL_ONLY", "GRANT_TYPE", "PARAMETERS", "handle"]

GRANT_TYPE: Final = "client_credentials"
PARAMETERS: Final = frozenset({"scope", "resource"})
# RFC 6749 §4.4: "The client credentials grant type MUST only be used by confidential clients."
CONFIDENTIAL_ONLY: Final = True


async def handle(ctx: Context, request: TokenRequest) -> dict[str, Any]:
    client = request.client
    subject = client.client_id
    policy = ctx.policy
    if policy.asks_authorize_scope:
        scope = await policy.hooks.authorize_scope(client, ctx.scope, grant_type=GRANT_TYPE, subject=subject)
    else:
        scope = client_scope(client, ctx.scope)
    audience = resolve_audience(ctx, client, request.resource)
    at = await mint_access_token(ctx, client=client, subject=subject, scope=scope, audience=audience)
    ctx.event(TOKEN_ISSUED, subject=subject, scope=scope, jti=at.claims["jti"], aud=list(audience))
    # RFC 6749 §4.4.3: "A refresh token SHOULD NOT be included."
    return token_response(at, scope)

"""``AttestoMiddleware`` in front of a Litestar application.

The middleware is pure ASGI, so it wraps any ASGI app: here it serves the token endpoint,
discovery and JWKS for a Litestar service, and Litestar serves everything else. It wraps
the whole application rather than sitting in Litestar's ``middleware=[...]`` list because
Litestar runs that list only for requests that match one of its own routes, and the
token endpoint is not one.

A Litestar route then accepts the tokens the middleware issues (``verify_access_token``
with the same ``Config``, which also asks the store whether the token was revoked).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, Request, get
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from attesto_asgi import AttestoMiddleware, Client, Config, InvalidToken, KeySet, verify_access_token

__all__ = ["create_app"]


def create_app(
    *,
    issuer: str,
    clients: tuple[Client, ...],
    store: str = "memory://",
    keys: KeySet | None = None,
) -> AttestoMiddleware:
    """``issuer``: the URL the app is served at; its own identifier is the tokens' audience."""
    config = Config(
        issuer=issuer,
        keys=keys or KeySet.generate("ES256"),
        store=store,
        clients=clients,
        default_audience=issuer,
    )

    async def claims_of(request: Request[Any, Any, Any], needed_scope: str) -> dict[str, Any]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException(
                "missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="litestar"'}
            )
        try:
            verified = await verify_access_token(config, token.strip(), audience=issuer, store=config.backend)
        except InvalidToken:
            raise NotAuthorizedException(
                "invalid token", headers={"WWW-Authenticate": 'Bearer realm="litestar", error="invalid_token"'}
            ) from None
        claims = dict(verified.claims)
        if needed_scope not in str(claims.get("scope", "")).split():
            # RFC 6750 §3.1 insufficient_scope: 403 with the scope needed.
            raise PermissionDeniedException(
                "insufficient scope",
                headers={
                    "WWW-Authenticate": f'Bearer realm="litestar", error="insufficient_scope", scope="{needed_scope}"'
                },
            )
        return claims

    @get("/")
    async def index() -> dict[str, str]:
        return {"service": "litestar example", "token_endpoint": config.token_endpoint}

    @get("/inventory")
    async def inventory(request: Request[Any, Any, Any]) -> dict[str, Any]:
        claims = await claims_of(request, "inventory:read")
        return {"client_id": claims["client_id"], "items": ["bolts", "nuts", "washers"]}

    @contextlib.asynccontextmanager
    async def close_store(app: Litestar) -> AsyncIterator[None]:
        yield
        await config.backend.aclose()

    app = Litestar(route_handlers=[index, inventory], lifespan=[close_store])
    return AttestoMiddleware(app, config=config)

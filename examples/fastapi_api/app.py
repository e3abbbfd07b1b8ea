"""A FastAPI resource server that accepts the example provider's access tokens.

``verify_access_token`` checks the RFC 9068 token (signature against the provider's JWKS,
``typ: at+jwt``, ``iss``, ``aud`` = this API, ``exp``); the route's dependency then
checks scope. Errors follow RFC 6750 §3: 401 ``invalid_token`` with a
``WWW-Authenticate: Bearer`` challenge, 403 ``insufficient_scope`` naming the scope.

The API fetches the provider's JWKS once at start-up (discovery, then ``jwks_uri``); a
deployment that shares the provider's store can pass the provider's ``Config`` instead to
have revoked tokens refused at once.
"""

# No "from __future__ import annotations": FastAPI reads the dependency annotations of the
# routes defined inside create_app at runtime.
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request

from attesto_asgi import InvalidToken, verify_access_token

__all__ = ["create_app"]

Claims = dict[str, Any]


def _challenge(error: str | None = None, scope: str | None = None) -> dict[str, str]:
    value = 'Bearer realm="reports"'
    if error:
        value += f', error="{error}"'
    if scope:
        value += f', scope="{scope}"'
    return {"WWW-Authenticate": value}


def create_app(*, issuer: str, audience: str, jwks: Mapping[str, Any] | None = None) -> FastAPI:
    """``audience``: this API's identifier (the ``resource`` clients ask tokens for)."""
    keys: dict[str, Any] = {"jwks": jwks}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if keys["jwks"] is None:
            async with httpx.AsyncClient(timeout=10) as http:
                metadata = (await http.get(f"{issuer}/.well-known/openid-configuration")).raise_for_status().json()
                keys["jwks"] = (await http.get(metadata["jwks_uri"])).raise_for_status().json()
        yield

    app = FastAPI(title="Reports API (attesto-asgi example)", lifespan=lifespan)

    async def token_claims(request: Request) -> Claims:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            # RFC 6750 §3.1: a request without credentials gets a challenge without an error code.
            raise HTTPException(401, "missing bearer token", headers=_challenge())
        try:
            verified = await verify_access_token(keys["jwks"], token.strip(), audience=audience, issuer=issuer)
        except InvalidToken:
            raise HTTPException(401, "invalid token", headers=_challenge("invalid_token")) from None
        return dict(verified.claims)

    def require_scope(needed: str) -> Callable[..., Coroutine[Any, Any, Claims]]:
        async def check(claims: Annotated[Claims, Depends(token_claims)]) -> Claims:
            if needed not in str(claims.get("scope", "")).split():
                raise HTTPException(403, "insufficient scope", headers=_challenge("insufficient_scope", needed))
            return claims

        return check

    @app.get("/whoami")
    async def whoami(claims: Annotated[Claims, Depends(token_claims)]) -> dict[str, Any]:
        return {k: claims.get(k) for k in ("sub", "client_id", "scope", "aud", "exp")}

    @app.get("/reports")
    async def reports(claims: Annotated[Claims, Depends(require_scope("reports:read"))]) -> dict[str, Any]:
        return {
            "owner": claims["sub"],
            "reports": [
                {"id": 1, "title": "Quarterly sign-ins", "value": 1288},
                {"id": 2, "title": "Refresh-token reuse detected", "value": 0},
            ],
        }

    return app

"""aioauth 2 (https://github.com/aliev/aioauth): ``AuthorizationServer`` over a dict storage.

As its documentation shows: subclass ``BaseStorage`` and implement ``get_client``,
``create_token`` / ``get_token`` / ``revoke_token``, the authorization-code methods and
``get_id_token``; convert the HTTP request into an ``aioauth.requests.Request`` and call
``server.create_token_response``. aioauth mints opaque access tokens; like ours, these are
RFC 9068 ES256 JWTs, signed in ``create_token`` with joserfc (aioauth has no JOSE code).
The OIDC variant registers ``aioauth.oidc.core.grant_type.AuthorizationCodeGrantType``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

from aioauth.collections import HTTPHeaderDict
from aioauth.config import Settings
from aioauth.grant_type import (
    AuthorizationCodeGrantType,
    ClientCredentialsGrantType,
    RefreshTokenGrantType,
)
from aioauth.models import AuthorizationCode, Client, Token
from aioauth.oidc.core.grant_type import AuthorizationCodeGrantType as OIDCAuthorizationCodeGrantType
from aioauth.requests import Post, Query, Request
from aioauth.server import AuthorizationServer
from aioauth.storage import BaseStorage
from joserfc import jwt

from ..common import (
    ALL_SCOPES,
    CLIENT_ID,
    CLIENT_SECRET,
    CODE_CHALLENGE,
    CODE_TTL,
    ISSUER,
    NONCE,
    REDIRECT_URI,
    REFRESH_SCOPE,
    SUBJECT,
    TOKEN_PATH,
    Built,
    Keys,
    Receive,
    Scope,
    Send,
    cc_body,
    code_body,
    code_scope,
    new_code,
    refresh_body,
)
from ._asgi import lifespan, read_body, send_json

__all__ = ["GRANTS", "build"]

GRANTS = ("client_credentials", "authorization_code", "authorization_code+id_token", "refresh_token")
ACCESS_TTL = 900


class DictStorage(BaseStorage):
    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.header = {"alg": "ES256", "typ": "at+jwt", "kid": keys.kid}
        self.clients = {
            CLIENT_ID: Client(
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                grant_types=["client_credentials", "authorization_code", "refresh_token"],
                response_types=["code"],
                redirect_uris=[REDIRECT_URI],
                scope=" ".join(ALL_SCOPES),
            )
        }
        self.tokens: dict[str, Token] = {}  # by refresh token
        self.codes: dict[str, AuthorizationCode] = {}

    async def get_client(self, *, request: Request, client_id: str, client_secret: str | None = None) -> Client | None:
        client = self.clients.get(client_id)
        if client is None:
            return None
        if client_secret is not None and not secrets.compare_digest(client.client_secret, client_secret):
            return None
        return client

    async def create_token(
        self, *, request: Request, client_id: str, scope: str, access_token: str, refresh_token: str | None = None
    ) -> Token:
        now = int(time.time())
        subject = client_id if request.post.grant_type == "client_credentials" else SUBJECT
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": subject,
            "aud": client_id,
            "exp": now + ACCESS_TTL,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": client_id,
            "scope": scope,
        }
        token = Token(
            access_token=jwt.encode(self.header, claims, self.keys.jwk, algorithms=["ES256"]),
            refresh_token=refresh_token,
            scope=scope,
            issued_at=now,
            expires_in=ACCESS_TTL,
            refresh_token_expires_in=request.settings.REFRESH_TOKEN_EXPIRES_IN,
            client_id=client_id,
        )
        if refresh_token is not None:
            self.tokens[refresh_token] = token
        return token

    async def get_token(
        self,
        *,
        request: Request,
        client_id: str,
        token_type: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
    ) -> Token | None:
        token = self.tokens.get(refresh_token or "")
        if token is None or token.client_id != client_id:
            return None
        return token

    async def revoke_token(
        self,
        *,
        request: Request,
        client_id: str,
        refresh_token: str | None = None,
        token_type: str | None = None,
        access_token: str | None = None,
    ) -> None:
        token = self.tokens.get(refresh_token or "")
        if token is not None:
            token.revoked = True

    async def create_authorization_code(self, **kwargs: Any) -> AuthorizationCode:  # the authorize step
        raise NotImplementedError

    async def get_authorization_code(self, *, request: Request, client_id: str, code: str) -> AuthorizationCode | None:
        record = self.codes.get(code)
        return record if record is not None and record.client_id == client_id else None

    async def delete_authorization_code(self, *, request: Request, client_id: str, code: str) -> None:
        self.codes.pop(code, None)

    async def get_id_token(
        self,
        *,
        request: Request,
        client_id: str,
        scope: str,
        redirect_uri: str,
        response_type: str | None = None,
        nonce: str | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": SUBJECT,
            "aud": client_id,
            "exp": now + 3600,
            "iat": now,
            "auth_time": now,
        }
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode({"alg": "ES256", "kid": self.keys.kid}, claims, self.keys.jwk, algorithms=["ES256"])


class AioauthApp:
    def __init__(self, server: AuthorizationServer, settings: Settings) -> None:
        self.server = server
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["path"] != TOKEN_PATH:
            await send_json(send, 404, {})
            return
        body = await read_body(receive)
        post = dict(parse_qsl(body.decode(), strict_parsing=True))
        raw_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        headers = HTTPHeaderDict(**raw_headers)  # type: ignore[no-untyped-call]  # aioauth leaves __init__ untyped
        request = Request(
            method=scope["method"],
            headers=headers,
            post=Post(**post),  # type: ignore[arg-type]
            query=Query(),
            url=f"{scope.get('scheme', 'https')}://auth.bench.example{scope['path']}",
            settings=self.settings,
        )
        response = await self.server.create_token_response(request)
        await send_json(send, response.status_code, response.content, dict(response.headers))


def build(grant: str, store_url: str, keys: Keys) -> Built:
    storage = DictStorage(keys)
    code_grant = (
        OIDCAuthorizationCodeGrantType if grant == "authorization_code+id_token" else AuthorizationCodeGrantType
    )
    server = AuthorizationServer(
        storage=storage,
        grant_types={
            "authorization_code": code_grant,
            "client_credentials": ClientCredentialsGrantType,
            "refresh_token": RefreshTokenGrantType,
        },
    )
    settings = Settings(INSECURE_TRANSPORT=True, AUTHORIZATION_CODE_EXPIRES_IN=CODE_TTL)

    async def mint(n: int) -> list[bytes]:
        base = grant.split("+")[0]
        now = int(time.time())
        if base == "client_credentials":
            return [cc_body()]
        out = []
        if base == "refresh_token":
            for _ in range(n):
                token = secrets.token_urlsafe(36)
                storage.tokens[token] = Token(
                    access_token="",
                    refresh_token=token,
                    scope=REFRESH_SCOPE,
                    issued_at=now,
                    expires_in=ACCESS_TTL,
                    refresh_token_expires_in=settings.REFRESH_TOKEN_EXPIRES_IN,
                    client_id=CLIENT_ID,
                )
                out.append(refresh_body(token))
            return out
        scope = code_scope(grant)
        for _ in range(n):
            code = new_code()
            storage.codes[code] = AuthorizationCode(
                code=code,
                client_id=CLIENT_ID,
                redirect_uri=REDIRECT_URI,
                response_type="code",
                scope=scope,
                auth_time=now,
                expires_in=settings.AUTHORIZATION_CODE_EXPIRES_IN,
                code_challenge=CODE_CHALLENGE,
                code_challenge_method="S256",
                nonce=NONCE if "openid" in scope else None,
            )
            out.append(code_body(code))
        return out

    return Built(app=AioauthApp(server, settings), mint=mint, reusable=grant == "client_credentials")

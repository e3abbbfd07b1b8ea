"""Authlib (https://authlib.org): the framework-neutral ``AuthorizationServer`` over dicts.

As its documentation shows for a custom framework: subclass
``authlib.oauth2.AuthorizationServer`` and implement ``query_client``, ``save_token``,
``create_oauth2_request``, ``create_json_request``, ``handle_response`` and ``send_signal``;
implement ``ClientMixin`` / ``AuthorizationCodeMixin`` / ``TokenMixin`` models; register
its grant classes (``CodeChallenge`` for PKCE, ``OpenIDCode`` for the ID token) and its
RFC 9068 ``JWTBearerTokenGenerator`` with ``alg="ES256"``. Authlib is synchronous: the
adapter calls it inline, as an ASGI host would with an in-memory store.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from authlib.common.security import generate_token
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    JsonRequest,
    OAuth2Request,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import KeySet

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


@dataclass
class User:
    id: str

    def get_user_id(self) -> str:
        return self.id


@dataclass
class BenchClient(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    scope: tuple[str, ...]
    grant_types: tuple[str, ...]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        if not scope:
            return ""
        return " ".join(s for s in scope.split() if s in self.scope)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class Code(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user_id: str
    code_challenge: str
    code_challenge_method: str
    auth_time: int
    nonce: str | None
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None

    def is_expired(self) -> bool:
        return self.expires_at < time.time()


@dataclass
class Token(TokenMixin):  # type: ignore[misc]
    client_id: str
    user_id: str
    scope: str
    refresh_token: str
    issued_at: int
    expires_in: int
    revoked: bool = False

    def check_client(self, client: BenchClient) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return self.issued_at + 14 * 86400 < time.time()

    def is_revoked(self) -> bool:
        return self.revoked


class Storage:
    def __init__(self) -> None:
        self.clients = {
            CLIENT_ID: BenchClient(
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                redirect_uris=(REDIRECT_URI,),
                scope=ALL_SCOPES,
                grant_types=("client_credentials", "authorization_code", "refresh_token"),
            )
        }
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, Token] = {}


class ASGIRequest:
    """What the adapter hands the server: method, URL, headers and the parsed form."""

    def __init__(self, method: str, uri: str, headers: dict[str, str], form: dict[str, str]) -> None:
        self.method = method
        self.uri = uri
        self.headers = headers
        self.form = form


class BenchOAuth2Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, request: ASGIRequest) -> None:
        super().__init__(request.method, request.uri, headers=request.headers)
        self._form = request.form
        self.payload = BasicOAuth2Payload(request.form)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, storage: Storage) -> None:
        super().__init__(scopes_supported=list(ALL_SCOPES))
        self.storage = storage

    def query_client(self, client_id: str) -> BenchClient | None:
        return self.storage.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        refresh = token.get("refresh_token")
        if refresh:
            user = request.user
            self.storage.tokens[refresh] = Token(
                client_id=request.client.get_client_id(),
                user_id=user.get_user_id() if user else request.client.get_client_id(),
                scope=token.get("scope", ""),
                refresh_token=refresh,
                issued_at=int(time.time()),
                expires_in=token["expires_in"],
            )

    def create_oauth2_request(self, request: ASGIRequest) -> OAuth2Request:
        return BenchOAuth2Request(request)

    def create_json_request(self, request: ASGIRequest) -> JsonRequest:
        return JsonRequest(request.method, request.uri, request.headers)

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> tuple[int, Any, Any]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


class AccessTokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]
    def __init__(self, keys: Keys) -> None:
        super().__init__(ISSUER, alg="ES256", refresh_token_generator=lambda **kw: generate_token(48))
        self.keys = KeySet([keys.jwk])

    def get_jwks(self) -> KeySet:
        return self.keys


def _grants(storage: Storage) -> tuple[type, type, type]:
    class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic"]

        def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
            raise NotImplementedError  # the authorize step; codes are pre-minted

        def query_authorization_code(self, code: str, client: BenchClient) -> Code | None:
            record = storage.codes.get(code)
            if record is not None and record.client_id == client.get_client_id() and not record.is_expired():
                return record
            return None

        def delete_authorization_code(self, authorization_code: Code) -> None:
            storage.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: Code) -> User:
            return User(authorization_code.user_id)

    class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic"]
        INCLUDE_NEW_REFRESH_TOKEN = True

        def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
            token = storage.tokens.get(refresh_token)
            if token is not None and not token.is_revoked() and not token.is_expired():
                return token
            return None

        def authenticate_user(self, refresh_token: Token) -> User:
            return User(refresh_token.user_id)

        def revoke_old_credential(self, refresh_token: Token) -> None:
            refresh_token.revoked = True

    class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic"]

    return AuthorizationCodeGrant, RefreshTokenGrant, ClientCredentialsGrant


class BenchOpenIDCode(OpenIDCode):  # type: ignore[misc]
    def __init__(self, keys: Keys) -> None:
        super().__init__(require_nonce=False)
        self.keys = keys

    def resolve_client_private_key(self, client: BenchClient) -> Any:
        return self.keys.jwk

    def get_client_algorithm(self, client: BenchClient) -> str:
        return "ES256"

    def get_client_claims(self, client: BenchClient) -> dict[str, Any]:
        return {"iss": ISSUER, "aud": [client.get_client_id()]}

    def get_encode_header(self, client: BenchClient) -> dict[str, str]:
        return {"alg": "ES256", "kid": self.keys.kid}

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return False

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return UserInfo(sub=user.get_user_id())


class AuthlibApp:
    def __init__(self, server: Server) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["path"] != TOKEN_PATH:
            await send_json(send, 404, {})
            return
        body = await read_body(receive)
        form = dict(parse_qsl(body.decode(), strict_parsing=True))
        headers = {k.decode("latin-1").title(): v.decode("latin-1") for k, v in scope["headers"]}
        request = ASGIRequest(scope["method"], f"https://auth.bench.example{scope['path']}", headers, form)
        status, content, response_headers = self.server.create_token_response(request)
        await send_json(send, status, content, dict(response_headers))


def build(grant: str, store_url: str, keys: Keys) -> Built:
    storage = Storage()
    server = Server(storage)
    server.register_token_generator("default", AccessTokenGenerator(keys))
    code_grant, refresh_grant, cc_grant = _grants(storage)
    server.register_grant(cc_grant)
    server.register_grant(code_grant, [CodeChallenge(required=True), BenchOpenIDCode(keys)])
    server.register_grant(refresh_grant)

    async def mint(n: int) -> list[bytes]:
        base = grant.split("+")[0]
        now = int(time.time())
        if base == "client_credentials":
            return [cc_body()]
        out = []
        if base == "refresh_token":
            for _ in range(n):
                token = generate_token(48)
                storage.tokens[token] = Token(
                    client_id=CLIENT_ID,
                    user_id=SUBJECT,
                    scope=REFRESH_SCOPE,
                    refresh_token=token,
                    issued_at=now,
                    expires_in=900,
                )
                out.append(refresh_body(token))
            return out
        scope = code_scope(grant)
        for _ in range(n):
            code = new_code()
            storage.codes[code] = Code(
                code=code,
                client_id=CLIENT_ID,
                redirect_uri=REDIRECT_URI,
                scope=scope,
                user_id=SUBJECT,
                code_challenge=CODE_CHALLENGE,
                code_challenge_method="S256",
                auth_time=now,
                nonce=NONCE if "openid" in scope else None,
                expires_at=now + CODE_TTL,
            )
            out.append(code_body(code))
        return out

    return Built(app=AuthlibApp(server), mint=mint, reusable=grant == "client_credentials")

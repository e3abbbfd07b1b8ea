"""What every benchmark target shares: the client, the key, the requests, the checks.

Every implementation (attesto, the floor, the peers) is built around the same client
registration and the same ES256 private key, receives byte-identical requests, and must
answer with an ES256-signed JWT access token that verifies against that key.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws, jwt
from joserfc.jwk import ECKey

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ISSUER = "https://auth.bench.example"
TOKEN_PATH = "/oauth/token"
CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret-" + "x" * 32
REDIRECT_URI = "https://client.bench.example/cb"
SUBJECT = "user-42"
CC_SCOPE = "read"
CODE_SCOPE = "read write"
OIDC_SCOPE = "openid read"
REFRESH_SCOPE = "read offline_access"
ALL_SCOPES = ("read", "write", "openid", "offline_access")
NONCE = "n-0S6_WzA2Mj"
# RFC 7636 Appendix B's verifier and its S256 challenge: one pair for every pre-minted code.
CODE_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CODE_CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(CODE_VERIFIER.encode()).digest()).rstrip(b"=").decode()

# Codes are minted before the run (a server mints its whole pool at start-up and the HTTP
# stage lasts minutes), so every implementation keeps them for an hour instead of 60 s.
CODE_TTL = 3600

GRANTS = ("client_credentials", "authorization_code", "authorization_code+id_token", "refresh_token")
STORES = ("memory", "sqlite", "redis")
IMPLS = ("attesto", "floor", "aioauth", "authlib")

FORM_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"application/x-www-form-urlencoded"),
    (b"authorization", b"Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode())),
]


def cc_body() -> bytes:
    return urlencode({"grant_type": "client_credentials", "scope": CC_SCOPE}).encode()


def code_body(code: str) -> bytes:
    return urlencode(
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": CODE_VERIFIER}
    ).encode()


def refresh_body(token: str) -> bytes:
    return urlencode({"grant_type": "refresh_token", "refresh_token": token}).encode()


def code_scope(grant: str) -> str:
    return OIDC_SCOPE if grant == "authorization_code+id_token" else CODE_SCOPE


@dataclass(frozen=True)
class Keys:
    """The one ES256 key every implementation signs with, in the forms each one takes."""

    jwk: ECKey
    private: ec.EllipticCurvePrivateKey
    kid: str

    @classmethod
    def generate(cls) -> Keys:
        return cls._of(ECKey.generate_key("P-256"))

    @classmethod
    def from_private_jwk(cls, data: dict[str, Any]) -> Keys:
        return cls._of(ECKey.import_key(data))

    @classmethod
    def _of(cls, jwk: ECKey) -> Keys:
        private = jwk.private_key
        if private is None:
            raise ValueError("the benchmark key must be private")
        return cls(jwk=jwk, private=private, kid=jwk.thumbprint())

    def private_jwk(self) -> dict[str, Any]:
        out = dict(self.jwk.as_dict(private=True))
        out.update(kid=self.kid, alg="ES256")
        return out


_REGISTRY = jws.JWSRegistry(algorithms=["ES256"])


def verify_jwt(token: str, keys: Keys) -> dict[str, Any]:
    """Verify an ES256 compact JWS against the shared key (joserfc); return its claims."""
    obj = jwt.decode(token, keys.jwk, algorithms=["ES256"], registry=_REGISTRY)
    if obj.header.get("alg") != "ES256":
        raise AssertionError(f"token not signed with ES256: {obj.header}")
    return dict(obj.claims)


class BenchApp(Protocol):
    """One implementation wired for one grant and one store, ready to take requests."""

    app: ASGIApp

    async def bodies(self, n: int) -> list[bytes]:
        """``n`` valid request bodies (pre-minted codes or refresh tokens), each usable once."""
        ...

    async def aclose(self) -> None: ...


@dataclass
class Built:
    """What a scenario factory returns: the ASGI app and how to make valid request bodies.

    ``reusable`` is True for client_credentials, whose one body may be sent forever.
    """

    app: ASGIApp
    mint: Callable[[int], Awaitable[list[bytes]]]
    reusable: bool
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def bodies(self, n: int) -> list[bytes]:
        return await self.mint(1 if self.reusable else n)

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            await close()


def new_code() -> str:
    return secrets.token_urlsafe(32)

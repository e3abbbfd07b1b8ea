"""The floor: the least work a correct client_credentials answer needs, in raw ASGI.

Read the body, strict ``parse_qsl``, decode the Basic credentials, one dict lookup and a
constant-time secret compare, one ES256 signature through ``cryptography``, one msgspec
encode. No framework, no store, no hooks, no events. Every other implementation is
measured against this one in the same run.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import secrets
import time
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .common import ISSUER, TOKEN_PATH, Keys, Receive, Scope, Send

__all__ = ["Floor"]

_HEADERS: Final = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
]
_ECDSA: Final = ec.ECDSA(hashes.SHA256())
_encode = msgspec.json.encode


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class Floor:
    """``Floor({client_id: (secret, allowed scopes)}, keys)``: POST /oauth/token, client_credentials only."""

    def __init__(self, clients: dict[str, tuple[str, tuple[str, ...]]], keys: Keys, *, ttl: int = 900) -> None:
        self.clients = {cid: (secret.encode(), frozenset(scope)) for cid, (secret, scope) in clients.items()}
        self.key = keys.private
        self.header = _b64(_encode({"alg": "ES256", "kid": keys.kid, "typ": "at+jwt"})) + b"."
        self.ttl = ttl

    async def _error(self, send: Send, status: int, error: str) -> None:
        await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": _encode({"error": error})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != TOKEN_PATH or scope["method"] != "POST":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
                return
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            params = dict(parse_qsl(body.decode("ascii"), strict_parsing=True, errors="strict"))
        except (UnicodeDecodeError, ValueError):
            await self._error(send, 400, "invalid_request")
            return
        auth = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
        client_id = secret = b""
        if auth[:6].lower() == b"basic ":
            with contextlib.suppress(ValueError):
                client_id, _, secret = base64.b64decode(auth[6:], validate=True).partition(b":")
        client = self.clients.get(client_id.decode("utf-8", "replace"))
        if client is None or not hmac.compare_digest(client[0], secret):
            await self._error(send, 401, "invalid_client")
            return
        if params.get("grant_type") != "client_credentials":
            await self._error(send, 400, "unsupported_grant_type")
            return
        now = int(time.time())
        cid = client_id.decode()
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": cid,
            "aud": cid,
            "exp": now + self.ttl,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": cid,
        }
        scope_value = params.get("scope")
        if scope_value:
            if not client[1].issuperset(scope_value.split(" ")):
                await self._error(send, 400, "invalid_scope")
                return
            claims["scope"] = scope_value
        signing_input = self.header + _b64(_encode(claims))
        r, s = decode_dss_signature(self.key.sign(signing_input, _ECDSA))
        token = signing_input + b"." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        response: dict[str, Any] = {"access_token": token.decode(), "token_type": "Bearer", "expires_in": self.ttl}
        if scope_value:
            response["scope"] = scope_value
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": _encode(response)})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

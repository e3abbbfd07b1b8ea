"""The floor: the least work a correct token answer needs, in raw ASGI.

``Floor`` answers client_credentials: read the body, strict ``parse_qsl``, decode the Basic
credentials, one dict lookup and a constant-time secret compare, one ES256 signature
through ``cryptography``, one msgspec encode. No framework, no store, no hooks, no events.
Every other implementation is measured against its figure in the same run.

``FloorCode`` answers authorization_code with PKCE the same way, in one function: the code
taken from a dict by its SHA-256, the RFC 6749 §4.1.3 and RFC 7636 §4.6 checks, one
signature, and a refresh token kept by its SHA-256 in another dict (bearer secrets are
stored only as hashes). It is what a layered library's code redemption would cost with
every layer fused away: the bound that the "0.6x the floor's client_credentials" target is
read against.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import time
from typing import Any, Final, NamedTuple
from urllib.parse import parse_qsl

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from .common import ISSUER, TOKEN_PATH, Keys, Receive, Scope, Send
from .peers._asgi import lifespan, read_body

__all__ = ["CodeGrant", "Floor", "FloorCode"]

_HEADERS: Final = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
]
_ECDSA: Final = ec.ECDSA(hashes.SHA256())
_encode = msgspec.json.encode
# RFC 7636 §4.1: code-verifier = 43*128unreserved.
_VERIFIER: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _hashed(secret: str) -> bytes:
    return _b64(hashlib.sha256(secret.encode()).digest())


def _basic(scope: Scope) -> tuple[bytes, bytes]:
    auth = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            auth = value
    client_id = secret = b""
    if auth[:6].lower() == b"basic ":
        with contextlib.suppress(ValueError):
            client_id, _, secret = base64.b64decode(auth[6:], validate=True).partition(b":")
    return client_id, secret


async def _error(send: Send, status: int, error: str) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _encode({"error": error})})


async def _not_served(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _raw(der: bytes) -> bytes:
    """RFC 7518 §3.4 R || S from cryptography's DER SEQUENCE { INTEGER r, INTEGER s } (P-256:
    one-octet lengths): slices, as attesto's ``keys._ecdsa_raw`` does (the floor does not
    import attesto), not ``decode_dss_signature`` and two ``int.to_bytes``, ~2 µs slower."""
    r_end = 4 + der[3]
    return der[4:r_end].lstrip(b"\0").rjust(32, b"\0") + der[r_end + 2 :].lstrip(b"\0").rjust(32, b"\0")


def _signed(key: ec.EllipticCurvePrivateKey, header: bytes, claims: dict[str, Any]) -> str:
    signing_input = header + _b64(_encode(claims))
    return (signing_input + b"." + _b64(_raw(key.sign(signing_input, _ECDSA)))).decode()


class Floor:
    """``Floor({client_id: (secret, allowed scopes)}, keys)``: POST /oauth/token, client_credentials only."""

    def __init__(self, clients: dict[str, tuple[str, tuple[str, ...]]], keys: Keys, *, ttl: int = 900) -> None:
        self.clients = {cid: (secret.encode(), frozenset(scope)) for cid, (secret, scope) in clients.items()}
        self.key = keys.private
        self.header = _b64(_encode({"alg": "ES256", "kid": keys.kid, "typ": "at+jwt"})) + b"."
        self.ttl = ttl

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != TOKEN_PATH or scope["method"] != "POST":
            await _not_served(scope, receive, send)
            return
        # The answer's own path stays written out in this one function (no helper calls):
        # its figure is the reference of every ratio, comparable with earlier runs.
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            params = dict(parse_qsl(body.decode("ascii"), strict_parsing=True, errors="strict"))
        except (UnicodeDecodeError, ValueError):
            await _error(send, 400, "invalid_request")
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
            await _error(send, 401, "invalid_client")
            return
        if params.get("grant_type") != "client_credentials":
            await _error(send, 400, "unsupported_grant_type")
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
                await _error(send, 400, "invalid_scope")
                return
            claims["scope"] = scope_value
        signing_input = self.header + _b64(_encode(claims))
        token = signing_input + b"." + _b64(_raw(self.key.sign(signing_input, _ECDSA)))
        response: dict[str, Any] = {"access_token": token.decode(), "token_type": "Bearer", "expires_in": self.ttl}
        if scope_value:
            response["scope"] = scope_value
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": _encode(response)})


class CodeGrant(NamedTuple):
    """What a code is bound to (RFC 6749 §4.1.3, RFC 7636 §4.4)."""

    client_id: str
    redirect_uri: str
    challenge: str
    subject: str
    scope: str
    auth_time: int
    expires_at: float


class FloorCode:
    """``FloorCode({client_id: secret}, keys)``: POST /oauth/token, authorization_code with
    PKCE (S256) only. ``codes`` maps a code's SHA-256 to its ``CodeGrant`` (``add_code``);
    every redemption stores one refresh token's SHA-256 in ``refresh``."""

    def __init__(self, clients: dict[str, str], keys: Keys, *, ttl: int = 900, refresh_ttl: int = 86400) -> None:
        self.clients = {cid: secret.encode() for cid, secret in clients.items()}
        self.key = keys.private
        self.header = _b64(_encode({"alg": "ES256", "kid": keys.kid, "typ": "at+jwt"})) + b"."
        self.ttl = ttl
        self.refresh_ttl = refresh_ttl
        self.codes: dict[bytes, CodeGrant] = {}
        self.refresh: dict[bytes, tuple[str, str, str, float]] = {}

    def add_code(self, code: str, grant: CodeGrant) -> None:
        self.codes[_hashed(code)] = grant

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != TOKEN_PATH or scope["method"] != "POST":
            await _not_served(scope, receive, send)
            return
        body = await read_body(receive)
        try:
            params = dict(parse_qsl(body.decode("ascii"), strict_parsing=True, errors="strict"))
        except (UnicodeDecodeError, ValueError):
            await _error(send, 400, "invalid_request")
            return
        client_id, secret = _basic(scope)
        expected = self.clients.get(client_id.decode("utf-8", "replace"))
        if expected is None or not hmac.compare_digest(expected, secret):
            await _error(send, 401, "invalid_client")
            return
        if params.get("grant_type") != "authorization_code":
            await _error(send, 400, "unsupported_grant_type")
            return
        code = params.get("code")
        redirect_uri = params.get("redirect_uri")
        verifier = params.get("code_verifier")
        if code is None or redirect_uri is None or verifier is None:
            await _error(send, 400, "invalid_request")
            return
        # Taken first, so a code is redeemed at most once and a failed redemption spends it.
        grant = self.codes.pop(_hashed(code), None)
        now = time.time()
        cid = client_id.decode()
        if (
            grant is None
            or grant.expires_at <= now
            or grant.client_id != cid
            or grant.redirect_uri != redirect_uri
            # RFC 7636 §4.1 (43*128unreserved) and §4.6 (S256, compared in constant time).
            or _VERIFIER.fullmatch(verifier) is None
            or not hmac.compare_digest(_b64(hashlib.sha256(verifier.encode()).digest()), grant.challenge.encode())
        ):
            await _error(send, 400, "invalid_grant")
            return
        iat = int(now)
        family = _b64(os.urandom(16)).decode()
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": grant.subject,
            "aud": cid,
            "exp": iat + self.ttl,
            "iat": iat,
            "jti": _b64(os.urandom(16)).decode(),
            "client_id": cid,
            "scope": grant.scope,
            "auth_time": grant.auth_time,
        }
        refresh_token = _b64(os.urandom(32)).decode()
        self.refresh[_hashed(refresh_token)] = (family, grant.subject, grant.scope, now + self.refresh_ttl)
        response = {
            "access_token": _signed(self.key, self.header, claims),
            "token_type": "Bearer",
            "expires_in": self.ttl,
            "scope": grant.scope,
            "refresh_token": refresh_token,
        }
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": _encode(response)})

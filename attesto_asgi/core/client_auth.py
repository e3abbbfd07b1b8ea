"""Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2 / §3).

``ClientAuthenticator.authenticate`` takes the ``Authorization`` header (or None) and the form, and
returns the authenticated client or raises ``OAuthError``. Every failure but "two methods
at once" and "body client_id differs" is one generic ``invalid_client``; the reason goes
to ``detail`` (logged), never to the client.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Mapping
from typing import Any, Final, cast
from urllib.parse import unquote_plus

import msgspec
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey

from .._secrets import verify_client_secret
from ..config import Config
from ..errors import INVALID_CLIENT, INVALID_REQUEST, OAuthError, quoted
from ..model import Client
from ._wire import Assertion

__all__ = ["ASSERTION_ALGS", "ASSERTION_TYPE", "MAX_ASSERTION_BYTES", "Authenticated", "ClientAuthenticator"]

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_BYTES: Final = 8192  # LESSONS: bound the size of every JOSE input
CLOCK_SKEW: Final = 5  # seconds allowed for nbf / iat in the future

_SECRET_PARAMS: Final = frozenset({"client_secret"})
_ASSERTION_PARAMS: Final = frozenset({"client_assertion", "client_assertion_type"})
_KTY_ALGS: Final[dict[str, tuple[str, ...]]] = {
    "EC": ("ES256", "ES384", "ES512"),
    "RSA": ("RS256", "PS256", "RS384", "PS384", "RS512", "PS512"),
    "OKP": ("EdDSA",),
}
# A C static when compiled, not a lookup on the module at every call (_secrets.py).
_a2b_base64: Final = binascii.a2b_base64
# Every algorithm a client assertion may be signed with (discovery advertises these).
ASSERTION_ALGS: Final = ("HS256", "HS384", "HS512", *(a for algs in _KTY_ALGS.values() for a in algs))
_REGISTRY = jws.JWSRegistry(algorithms=list(ASSERTION_ALGS))


class Authenticated:
    """The client a request authenticated as, and by which method. A plain class, not a
    NamedTuple: compiled, it is a native class (its fields read directly, built without an
    interpreted ``__new__``)."""

    __slots__ = ("client", "method")

    def __init__(self, client: Client, method: str) -> None:
        self.client: Final = client
        self.method: Final = method


def _parse_basic(header: str) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: id and secret are form-encoded, then joined by ':' and base64'd."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        # What base64.b64decode(validate=True) does, without its two Python frames.
        decoded = _a2b_base64(value.strip().encode("ascii"), strict_mode=True).decode("utf-8")
    except (binascii.Error, UnicodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return _form_decode(client_id), _form_decode(secret)


def _form_decode(value: str) -> str:
    # Lenient, unlike the body's strict reading (asgi/form.py): a stray '%' stays as it is, so
    # a client that sends its secret without form-encoding it (a common client bug) still
    # authenticates, and a malformed escape can only fail the constant-time compare.
    # unquote_plus is the identity on a value without '%' or '+'; skip its cost then.
    return unquote_plus(value) if "%" in value or "+" in value else value


def _pinned_algs(client: Client) -> tuple[str, ...]:
    """RFC 7523 / LESSONS: algorithms are pinned by the client's registration."""
    if client.token_endpoint_auth_signing_alg is not None:
        return (client.token_endpoint_auth_signing_alg,)
    if client.token_endpoint_auth_method == "client_secret_jwt":
        return ("HS256",)
    algs: list[str] = []
    for jwk in (client.jwks or {}).get("keys", []):
        alg = jwk.get("alg")
        algs.extend([alg] if isinstance(alg, str) else _KTY_ALGS.get(jwk.get("kty", ""), ()))
    return tuple(dict.fromkeys(algs))


def _unverified_segments(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    parts = assertion.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    header = msgspec.json.decode(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    payload = msgspec.json.decode(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise ValueError("header or payload is not a JSON object")
    return header, payload


class ClientAuthenticator:
    """Set up once per Config; ``authenticate`` per request."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.policy = config._policy
        # RFC 7523 §3 item 3: an aud identifying this server: the issuer, or the URL of the
        # endpoint authenticated at (token, revocation, introspection: all share this check).
        self.audiences = frozenset(
            {
                config.issuer,
                config.token_endpoint,
                config.endpoint(config.revocation_path),
                config.endpoint(config.introspection_path),
            }
        )
        self.realm_header = (("www-authenticate", f'Basic realm="{config.issuer}"'),)
        self._client_keys: dict[str, tuple[dict[str, Any] | None, KeySet]] = {}

    def _fail(self, detail: str, used_header: bool) -> OAuthError:
        # RFC 6749 §5.2: 401 and WWW-Authenticate when the client used the Authorization header.
        if used_header:
            return OAuthError(INVALID_CLIENT, detail=detail, status=401, headers=self.realm_header)
        return OAuthError(INVALID_CLIENT, detail=detail, status=400)

    async def authenticate(self, authorization: str | None, params: Mapping[str, str]) -> Authenticated:
        used_header = authorization is not None
        has_secret = not _SECRET_PARAMS.isdisjoint(params)
        has_assertion = not _ASSERTION_PARAMS.isdisjoint(params)
        # RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each request."
        if used_header + has_secret + has_assertion > 1:
            raise OAuthError(INVALID_REQUEST, "Only one client authentication method may be used.")
        body_id = params.get("client_id")
        if authorization is not None:
            creds = _parse_basic(authorization)
            if creds is None:
                raise self._fail("malformed Authorization header", used_header)
            client_id, secret = creds
            self._same_client_id(body_id, client_id)
            return await self._by_secret(client_id, secret, "client_secret_basic", used_header)
        if has_secret:
            if body_id is None:
                raise self._fail("client_secret without client_id", used_header)
            return await self._by_secret(body_id, params["client_secret"], "client_secret_post", used_header)
        if has_assertion:
            return await self._by_assertion(params, body_id)
        if body_id is None:
            raise self._fail("no client authentication", used_header)
        client = await self.policy.load_client(self.config, body_id)
        if client is None or client.token_endpoint_auth_method != "none":
            raise self._fail("not a public client, or unknown", used_header)
        return Authenticated(client, "none")

    @staticmethod
    def _same_client_id(body_id: str | None, authenticated_id: str) -> None:
        if body_id is not None and body_id != authenticated_id:
            raise OAuthError(INVALID_REQUEST, "client_id does not match the authenticated client.")

    async def _by_secret(self, client_id: str, secret: str, method: str, used_header: bool) -> Authenticated:
        client = await self.policy.load_client(self.config, client_id)
        registered = client is not None and client.token_endpoint_auth_method == method
        # An unknown client or a wrong method costs the same work as a wrong secret.
        stored = client.client_secret if client is not None and registered else None
        if not verify_client_secret(stored, secret) or client is None:
            raise self._fail(f"{method}: unknown client, wrong method or wrong secret", used_header)
        return Authenticated(client, method)

    def _keys_for(self, client: Client) -> KeySet:
        # Cached by value (a copy, compared by ==), so a key removed from a client's JWKS,
        # even in place, is refused at once.
        cached = self._client_keys.get(client.client_id)
        if cached is not None and cached[0] == client.jwks:
            return cached[1]
        keys = KeySet.import_key_set(cast(Any, client.jwks or {"keys": []}))
        self._client_keys[client.client_id] = (copy.deepcopy(client.jwks), keys)
        return keys

    async def _by_assertion(self, params: Mapping[str, str], body_id: str | None) -> Authenticated:
        fail = self._fail
        if params.get("client_assertion_type") != ASSERTION_TYPE:
            raise fail("unsupported client_assertion_type", False)
        assertion = params.get("client_assertion", "")
        if not assertion or len(assertion) > MAX_ASSERTION_BYTES:
            raise fail("client_assertion missing or too large", False)
        try:
            header, unverified = _unverified_segments(assertion)
        except (ValueError, binascii.Error, msgspec.DecodeError, RecursionError):  # nested past the stack
            raise fail("client_assertion is not a JWS", False) from None
        client_id = unverified.get("sub")
        if not isinstance(client_id, str):
            raise fail("client_assertion without sub", False)
        self._same_client_id(body_id, client_id)
        client = await self.policy.load_client(self.config, client_id)
        if client is None or client.token_endpoint_auth_method not in ("private_key_jwt", "client_secret_jwt"):
            raise fail("assertion from an unknown client or a client registered for another method", False)
        algs = _pinned_algs(client)
        if header.get("alg") not in algs:
            raise fail(f"assertion alg {quoted(header.get('alg'))} not registered for the client", False)
        candidates: list[Any]
        if client.token_endpoint_auth_method == "client_secret_jwt":
            candidates = [OctKey.import_key(client.jwt_secret or b"")]
        else:
            keys = self._keys_for(client)
            kid = header.get("kid")
            # Never a key from the token's own header (jwk / jku / x5u): only registered keys.
            try:
                candidates = [keys.get_by_kid(kid)] if isinstance(kid, str) else list(keys.keys)
            except (JoseError, ValueError):
                raise fail("assertion kid not among the client's keys", False) from None
            if not candidates:
                raise fail("client has no keys", False)
        try:
            verified = _verified(assertion, candidates, list(algs))
            claims = msgspec.json.decode(verified.payload, type=Assertion)
        except (JoseError, ValueError, msgspec.DecodeError) as exc:
            raise fail(f"assertion rejected: {exc.__class__.__name__}", False) from None
        now = self.config.clock()
        self._check_claims(client, claims, now)
        ttl = claims.exp - now + CLOCK_SKEW
        # RFC 7523 §3 item 7: the server may ensure the JWT is not replayed, by its jti.
        # The client_id's length first: "a:b" + jti "c" and "a" + jti "b:c" must not share a key.
        replay_key = f"client-assertion:{len(client.client_id)}:{client.client_id}:{claims.jti}"
        if not await self.config.backend.claim_once(replay_key, ttl):
            raise fail("client assertion jti replayed", False)
        return Authenticated(client, client.token_endpoint_auth_method)

    def _check_claims(self, client: Client, claims: Assertion, now: float) -> None:
        fail = self._fail
        # RFC 7523 §3 items 1-2: iss and sub MUST both be the client_id.
        if claims.iss != client.client_id or claims.sub != client.client_id:
            raise fail("assertion iss/sub is not the client_id", False)
        aud = claims.aud if isinstance(claims.aud, str) else (claims.aud[0] if len(claims.aud) == 1 else None)
        # RFC 7523 §3 item 3: aud identifies this authorization server (issuer or token endpoint URL).
        if aud not in self.audiences:
            raise fail("assertion aud is not this server", False)
        # RFC 7523 §3 item 4: exp required and in the future; we also bound how far ahead.
        if not now < claims.exp <= now + self.config.client_assertion_ttl:
            raise fail("assertion exp missing, past, or too far ahead", False)
        if claims.nbf is not None and claims.nbf > now + CLOCK_SKEW:
            raise fail("assertion not yet valid (nbf)", False)
        if claims.iat is not None and claims.iat > now + CLOCK_SKEW:
            raise fail("assertion issued in the future (iat)", False)
        if not claims.jti:
            raise fail("assertion without jti", False)


def _verified(assertion: str, candidates: list[Any], algorithms: list[str]) -> jws.CompactSignature:
    """The assertion verified with the first registered key that verifies it. Without a
    ``kid`` each of the client's keys is tried in turn (RFC 7515 §4.1.4: kid is OPTIONAL;
    joserfc picks no key from a set without one); the last key's error is the one raised."""
    for key in candidates[:-1]:
        try:
            return jws.deserialize_compact(assertion, key, algorithms=algorithms, registry=_REGISTRY)
        except (JoseError, ValueError):
            continue
    return jws.deserialize_compact(assertion, candidates[-1], algorithms=algorithms, registry=_REGISTRY)

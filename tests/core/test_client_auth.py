"""RFC 6749 §2.3 and RFC 7523 client authentication, through HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import ClientSecretJWT, PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from attesto_asgi import AttestoMiddleware, Client, Config, MemoryStore, _secrets
from attesto_asgi.core.client_auth import ASSERTION_TYPE
from tests.helpers import (
    HS_SECRET,
    PKJWT_KEY,
    POST_SECRET,
    SVC_SECRET,
    TOKEN_URL,
    http_client,
    not_found_app,
)

CC = {"grant_type": "client_credentials"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def assertion(
    key: Any = PKJWT_KEY,
    alg: str = "ES256",
    header: dict[str, Any] | None = None,
    now: float | None = None,
    **overrides: Any,
) -> str:
    now = time.time() if now is None else now
    claims: dict[str, Any] = {
        "iss": "pkjwt",
        "sub": "pkjwt",
        "aud": TOKEN_URL,
        "exp": int(now) + 60,
        "iat": int(now),
        "jti": _secrets.new_id(),
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": "pk-1", **(header or {})}, claims, key, algorithms=[alg])


async def post(
    client: httpx.AsyncClient, form: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post("/oauth/token", data={**CC, **form}, headers=headers or {})


# --------------------------------------------------------------------------- secrets


async def test_client_secret_basic(client: httpx.AsyncClient) -> None:
    r = await post(client, {}, basic("svc", SVC_SECRET))
    assert r.status_code == 200


async def test_basic_credentials_are_form_decoded(make_config: Callable[..., Config]) -> None:
    # RFC 6749 §2.3.1: id and secret are encoded with application/x-www-form-urlencoded first.
    odd = Client(client_id="weird id:ü", client_secret="p@ss:w+rd/ü %", grant_types=("client_credentials",))
    config = make_config(clients=(odd,))
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        assert (await post(http, {}, basic("weird id:ü", "p@ss:w+rd/ü %"))).status_code == 200
        raw = base64.b64encode("weird id:ü:p@ss:w+rd/ü %".encode()).decode()
        r = await post(http, {}, {"Authorization": f"Basic {raw}"})
        assert r.status_code == 401  # not form-encoded: the id splits at the first ':'


async def test_basic_credentials_with_a_stray_percent_decode_leniently(make_config: Callable[..., Config]) -> None:
    # A secret with a '%' not followed by two hex digits, sent as is (not form-encoded, which
    # RFC 6749 §2.3.1 asks for) or encoded: both authenticate; a wrong one still fails.
    odd = Client(client_id="pct", client_secret="50%off-and+more", grant_types=("client_credentials",))
    config = make_config(clients=(odd,))
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        assert (await post(http, {}, basic("pct", "50%off-and+more"))).status_code == 200
        raw = base64.b64encode(b"pct:50%off-and%2Bmore").decode()
        assert (await post(http, {}, {"Authorization": f"Basic {raw}"})).status_code == 200
        wrong = base64.b64encode(b"pct:50%of").decode()
        assert (await post(http, {}, {"Authorization": f"Basic {wrong}"})).status_code == 401


async def test_wrong_secret_over_basic_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    r = await post(client, {}, basic("svc", "wrong"))
    assert r.status_code == 401
    assert r.json() == {"error": "invalid_client", "error_description": "Client authentication failed."}
    assert r.headers["www-authenticate"] == 'Basic realm="http://localhost"'
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "header", ["Basic", "Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer abc"]
)
async def test_malformed_authorization_header_is_invalid_client(client: httpx.AsyncClient, header: str) -> None:
    r = await post(client, {}, {"Authorization": header})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


async def test_unknown_client_is_the_same_generic_invalid_client(client: httpx.AsyncClient) -> None:
    unknown = await post(client, {}, basic("nobody", "x"))
    wrong = await post(client, {}, basic("svc", "x"))
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


@pytest.mark.pure_only
async def test_unknown_client_costs_a_secret_check(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str | None] = []
    real = _secrets.verify_client_secret

    def counting(stored: str | None, presented: str) -> bool:
        calls.append(stored)
        return real(stored, presented)

    monkeypatch.setattr("attesto_asgi.core.client_auth.verify_client_secret", counting)
    await post(client, {}, basic("nobody", "x"))
    await post(client, {"client_id": "nobody", "client_secret": "x"})
    assert calls == [None, None]  # the keyed hash against the dummy hash still ran


async def test_client_secret_post(client: httpx.AsyncClient) -> None:
    r = await post(client, {"client_id": "poster", "client_secret": POST_SECRET})
    assert r.status_code == 200


async def test_wrong_secret_over_post_is_400_without_challenge(client: httpx.AsyncClient) -> None:
    r = await post(client, {"client_id": "poster", "client_secret": "nope"})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_client"
    assert "www-authenticate" not in r.headers


async def test_only_the_registered_method_is_accepted(client: httpx.AsyncClient) -> None:
    # "svc" is registered for client_secret_basic; its right secret in the body is refused.
    r = await post(client, {"client_id": "svc", "client_secret": SVC_SECRET})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_client"
    r = await post(client, {}, basic("poster", POST_SECRET))
    assert r.status_code == 401


async def test_two_methods_at_once_is_invalid_request(client: httpx.AsyncClient) -> None:
    # RFC 6749 §2.3: the client MUST NOT use more than one authentication method.
    r = await post(client, {"client_secret": SVC_SECRET}, basic("svc", SVC_SECRET))
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


async def test_body_client_id_differing_from_basic_is_invalid_request(client: httpx.AsyncClient) -> None:
    r = await post(client, {"client_id": "poster"}, basic("svc", SVC_SECRET))
    assert r.json()["error"] == "invalid_request"
    r = await post(client, {"client_id": "svc"}, basic("svc", SVC_SECRET))
    assert r.status_code == 200


async def test_no_authentication_at_all_is_invalid_client(client: httpx.AsyncClient) -> None:
    r = await post(client, {})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_client"


async def test_public_client_authenticates_with_client_id_only(client: httpx.AsyncClient) -> None:
    r = await post(client, {"client_id": "spa"})
    # Authenticated as a public client; client_credentials is not its grant.
    assert r.json()["error"] == "unauthorized_client"
    r = await post(client, {"client_id": "svc"})  # a confidential client cannot skip its secret
    assert r.json()["error"] == "invalid_client"


def test_secrets_are_held_hashed_only() -> None:
    c = Client(client_id="x", client_secret="plain-text-secret")
    assert c.client_secret is not None
    assert c.client_secret.startswith("blake2s$")
    assert "plain-text-secret" not in repr(c)
    prehashed = _secrets.hash_client_secret("from-a-file")
    assert Client(client_id="y", client_secret=prehashed).client_secret == prehashed
    assert _secrets.verify_client_secret(prehashed, "from-a-file")
    assert not _secrets.verify_client_secret(prehashed, "from-a-file ")
    hs = Client(client_id="z", client_secret="hmac-key", token_endpoint_auth_method="client_secret_jwt")
    assert "hmac-key" not in repr(hs)


# --------------------------------------------------------------------------- RFC 7523


@pytest.fixture
def real_time_config(make_config: Callable[..., Config]) -> Config:
    """authlib stamps assertions with the wall clock."""
    return make_config(clock=time.time, store=MemoryStore(warn=False))


async def test_private_key_jwt_with_authlib_client_and_replay(real_time_config: Config) -> None:
    config = real_time_config
    app = AttestoMiddleware(not_found_app, config)
    auth = PrivateKeyJWT(TOKEN_URL, headers={"kid": "pk-1"}, alg="ES256", claims={"exp": int(time.time()) + 120})
    async with AsyncOAuth2Client(
        client_id="pkjwt",
        client_secret=PKJWT_KEY,
        token_endpoint_auth_method=auth,
        transport=httpx.ASGITransport(app=app),
        base_url="http://localhost",
    ) as oauth:
        token = await oauth.fetch_token(TOKEN_URL, grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert token["access_token"].count(".") == 2

    signed = assertion(now=config.clock())
    async with http_client(app) as http:
        form = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}
        assert (await post(http, form)).status_code == 200
        replay = await post(http, form)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_client"


async def test_client_secret_jwt_with_authlib_client(real_time_config: Config) -> None:
    app = AttestoMiddleware(not_found_app, real_time_config)
    async with AsyncOAuth2Client(
        client_id="hsjwt",
        client_secret=HS_SECRET,
        token_endpoint_auth_method=ClientSecretJWT(TOKEN_URL, claims={"exp": int(time.time()) + 120}),
        transport=httpx.ASGITransport(app=app),
        base_url="http://localhost",
    ) as oauth:
        token = await oauth.fetch_token(TOKEN_URL, grant_type="client_credentials")
    assert token["token_type"] == "Bearer"


def hs256_with_public_key(now: float) -> str:
    """The classic algorithm-confusion forgery, built by hand (joserfc refuses to make it)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "kid": "pk-1"}).encode())
    claims = {"iss": "pkjwt", "sub": "pkjwt", "aud": TOKEN_URL, "exp": int(now) + 60, "jti": "x"}
    payload = b64(json.dumps(claims).encode())
    mac = hmac.new(PKJWT_KEY.as_pem(private=False), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(mac)}"


def _bad_assertions(now: float) -> dict[str, str]:
    other_ec = ECKey.generate_key("P-256")
    return {
        "wrong key": assertion(key=other_ec, now=now),
        "iss differs from sub": assertion(iss="svc", now=now),
        "audience elsewhere": assertion(aud="https://other.example.com/token", now=now),
        "audience array of two": assertion(aud=[TOKEN_URL, "https://other"], now=now),
        "expired": assertion(exp=int(now) - 1, now=now),
        "exp too far ahead": assertion(exp=int(now) + 301, now=now),
        "no exp": assertion(exp=None, now=now),
        "no jti": assertion(jti=None, now=now),
        "not yet valid": assertion(nbf=int(now) + 60, now=now),
        "issued in the future": assertion(iat=int(now) + 60, now=now),
        "unregistered alg (HS256 keyed with the public key)": hs256_with_public_key(now),
        "key from the jwk header": assertion(
            key=other_ec, header={"jwk": other_ec.as_dict(private=False), "kid": "attacker"}, now=now
        ),
        "unknown kid": assertion(header={"kid": "nope"}, now=now),
        "alg none": "eyJhbGciOiJub25lIn0."
        + base64.urlsafe_b64encode(b'{"iss":"pkjwt","sub":"pkjwt"}').decode().rstrip("=")
        + ".",
        "not a jwt": "abc.def",
        "huge": "a" * 9000,
        "RS256 not registered": assertion(key=RSAKey.generate_key(2048), alg="RS256", now=now),
    }


async def test_every_bad_assertion_is_one_generic_invalid_client(client: httpx.AsyncClient, config: Config) -> None:
    for reason, signed in _bad_assertions(config.clock()).items():
        r = await post(client, {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed})
        assert r.status_code == 400, reason
        assert r.json() == {"error": "invalid_client", "error_description": "Client authentication failed."}, reason


async def test_assertion_audience_may_be_the_issuer_or_a_one_member_array(
    client: httpx.AsyncClient, config: Config
) -> None:
    for aud in ("http://localhost", [TOKEN_URL]):
        signed = assertion(aud=aud, now=config.clock())
        r = await post(client, {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed})
        assert r.status_code == 200, aud


async def test_wrong_assertion_type_or_body_client_id(client: httpx.AsyncClient, config: Config) -> None:
    signed = assertion(now=config.clock())
    r = await post(client, {"client_assertion_type": "urn:other", "client_assertion": signed})
    assert r.json()["error"] == "invalid_client"
    r = await post(client, {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed, "client_id": "svc"})
    assert r.json()["error"] == "invalid_request"


def _pkjwt_client(client_id: str, *keys: ECKey) -> Client:
    jwks = {"keys": [dict(k.as_dict(private=False), kid=f"k{i}", alg="ES256") for i, k in enumerate(keys)]}
    return Client(
        client_id=client_id,
        token_endpoint_auth_method="private_key_jwt",
        jwks=jwks,
        grant_types=("client_credentials",),
    )


def _signed(client_id: str, key: ECKey, now: float, header: dict[str, Any] | None = None, jti: str = "") -> str:
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": int(now) + 60,
        "jti": jti or _secrets.new_id(),
    }
    return jwt.encode({"alg": "ES256", **(header or {})}, claims, key, algorithms=["ES256"])


async def test_an_assertion_without_kid_verifies_with_any_of_the_clients_keys(
    make_config: Callable[..., Config],
) -> None:
    # RFC 7515 §4.1.4: kid is OPTIONAL. With two keys registered (a rotation), either signs.
    k0, k1, stranger = (ECKey.generate_key("P-256") for _ in range(3))
    config = make_config(clients=(_pkjwt_client("two-keys", k0, k1),))
    now = config.clock()
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        for key, header, status in (
            (k0, None, 200),
            (k1, None, 200),
            (stranger, None, 400),
            (k1, {"kid": "k1"}, 200),
            (k0, {"kid": "k1"}, 400),  # a kid names the one key to try
        ):
            form = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": _signed("two-keys", key, now, header)}
            r = await post(http, form)
            assert r.status_code == status, (header, r.text)


async def test_a_key_removed_from_a_clients_jwks_in_place_is_refused_at_once(
    make_config: Callable[..., Config],
) -> None:
    k0, k1 = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    client = _pkjwt_client("rotating", k0, k1)
    config = make_config(clients=(client,))
    now = config.clock()
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        form = {"client_assertion_type": ASSERTION_TYPE}
        assert (await post(http, {**form, "client_assertion": _signed("rotating", k1, now)})).status_code == 200
        assert client.jwks is not None
        client.jwks["keys"].pop()  # k1 compromised: the host drops it from the same dict
        assert (await post(http, {**form, "client_assertion": _signed("rotating", k1, now)})).status_code == 400
        assert (await post(http, {**form, "client_assertion": _signed("rotating", k0, now)})).status_code == 200


async def test_replay_keys_of_two_clients_never_collide(make_config: Callable[..., Config]) -> None:
    # "a:b" with jti "c" and "a" with jti "b:c": one client must not spend the other's jti.
    key = ECKey.generate_key("P-256")
    config = make_config(clients=(_pkjwt_client("a:b", key), _pkjwt_client("a", key)))
    now = config.clock()
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        for client_id, jti in (("a:b", "c"), ("a", "b:c")):
            signed = _signed(client_id, key, now, jti=jti)
            r = await post(http, {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed})
            assert r.status_code == 200, (client_id, r.text)
            again = await post(http, {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed})
            assert again.status_code == 400  # each still replays only its own


async def test_an_assertion_nested_past_the_stack_is_invalid_client(client: httpx.AsyncClient) -> None:
    # Decoded before its signature is checked: bad input is invalid_client, never a 500.
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    nested = b64(b'{"alg":"ES256"}') + "." + b64(b"[" * 1500 + b"]" * 1500) + ".AAAA"
    r = await post(client, {"client_assertion_type": ASSERTION_TYPE, "client_assertion": nested})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_client")

"""Verification of our own JWTs (core/verify.py) and the public ``verify_access_token``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws

from attesto_asgi import Config, InvalidToken, KeySet, MemoryStore, VerifiedToken, verify_access_token
from attesto_asgi.core.verify import (
    ACCESS_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    MAX_JWT_BYTES,
    TrustedKeys,
    trusted_keys,
    verify_jwt,
)
from tests.families import API, family_clients, start_family
from tests.helpers import ISSUER, FakeClock, examples, keyset, standard_clients

_REGISTRY = jws.JWSRegistry(algorithms=["ES256", "EdDSA", "HS256"])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_jws(header: dict[str, Any], payload: bytes, key: Any, alg: str = "ES256") -> str:
    """Sign exactly the header given (joserfc refuses to produce some of the forgeries)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload)}".encode()
    signature = _REGISTRY.get_alg(alg).sign(signing_input, key)
    return f"{signing_input.decode()}.{b64(signature)}"


@pytest.fixture
def cfg(make_config: Callable[..., Config]) -> Config:
    return make_config(clients=(*standard_clients(), *family_clients()))


def claims_now(config: Config, **overrides: Any) -> dict[str, Any]:
    now = int(config.clock())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": API,
        "exp": now + 300,
        "iat": now,
        "jti": "j-1",
        "client_id": "web",
        "scope": "read write",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(config: Config, claims: dict[str, Any], typ: str = "at+jwt") -> str:
    return config.keys.signer().sign(claims, typ)


def check(config: Config, token: str, token_type: str = ACCESS_TOKEN_TYPE, **kw: Any) -> VerifiedToken:
    return verify_jwt(
        trusted_keys(config.keys), token, token_type=token_type, issuer=config.issuer, now=config.clock(), **kw
    )


# ------------------------------------------------------------------ what a good token yields


async def test_family_access_token_verifies_with_every_field(cfg: Config) -> None:
    fam = await start_family(cfg)
    v = await verify_access_token(cfg, fam.access_token, audience=API)
    assert v.token_type == ACCESS_TOKEN_TYPE
    assert (v.issuer, v.subject, v.client_id) == (ISSUER, "alice", "web")
    assert v.audience == (API,)
    assert v.scope == ("read", "write")
    assert v.jti == fam.access_claims["jti"]
    assert v.expires_at == fam.access_claims["exp"] == int(cfg.clock()) + cfg.access_token_ttl
    assert v.issued_at == int(cfg.clock())
    assert v.claims == fam.access_claims


async def test_verifies_from_keyset_and_from_published_jwks(cfg: Config) -> None:
    fam = await start_family(cfg)
    now = cfg.clock()
    by_keys = await verify_access_token(cfg.keys, fam.access_token, audience=API, issuer=ISSUER, now=now)
    jwks = json.loads(json.dumps(cfg.keys.public_jwks()))  # as fetched from jwks_uri
    by_jwks = await verify_access_token(jwks, fam.access_token, audience=[API, "other"], issuer=ISSUER, now=now)
    assert by_keys == by_jwks


async def test_a_token_signed_before_a_key_rotation_still_verifies(make_config: Callable[..., Config]) -> None:
    config = make_config(keys=keyset("ES256", "EdDSA"))
    token = config.keys.signer("EdDSA").sign(claims_now(config), "at+jwt")
    assert check(config, token).subject == "alice"


async def test_wall_clock_is_the_default_time_for_a_jwks(cfg: Config) -> None:
    fresh = {**claims_now(cfg), "iat": int(time.time()), "exp": int(time.time()) + 60}
    token = sign(cfg, fresh)
    assert (await verify_access_token(cfg.keys.public_jwks(), token, audience=API, issuer=ISSUER)).jti == "j-1"
    stale = sign(cfg, {**fresh, "exp": int(time.time()) - 1})
    with pytest.raises(InvalidToken, match="expired"):
        await verify_access_token(cfg.keys.public_jwks(), stale, audience=API, issuer=ISSUER)


# ------------------------------------------------------------------ claims


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example"}, "iss"),
        ({"iss": ISSUER + "/"}, "iss"),
        ({"aud": "https://other.example"}, "aud"),
        ({"aud": ["https://a.example", "https://b.example"]}, "aud"),
        ({"jti": None}, "jti"),
        ({"client_id": None}, "client_id"),
        ({"exp": "2000000000"}, "types"),
        ({"exp": True}, "types"),
        ({"exp": None}, "types"),
        ({"sub": 42}, "types"),
        ({"aud": []}, "aud"),
        ({"aud": None}, "types"),
    ],
)
async def test_bad_claims_are_refused(cfg: Config, overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason):
        await verify_access_token(cfg, sign(cfg, claims_now(cfg, **overrides)), audience=API)


async def test_audience_list_with_ours_is_accepted(cfg: Config) -> None:
    token = sign(cfg, claims_now(cfg, aud=["https://a.example", API]))
    assert (await verify_access_token(cfg, token, audience=API)).audience == ("https://a.example", API)


async def test_expiry_is_exclusive_and_leeway_is_honoured(cfg: Config, clock: FakeClock) -> None:
    token = sign(cfg, claims_now(cfg))
    clock.advance(299)
    assert (await verify_access_token(cfg, token, audience=API)).subject == "alice"
    clock.advance(1)  # RFC 7519 §4.1.4: not accepted on or after exp
    with pytest.raises(InvalidToken, match="expired"):
        await verify_access_token(cfg, token, audience=API)
    assert (await verify_access_token(cfg, token, audience=API, leeway=5)).subject == "alice"


async def test_not_yet_valid_is_refused(cfg: Config) -> None:
    token = sign(cfg, claims_now(cfg, nbf=int(cfg.clock()) + 60))
    with pytest.raises(InvalidToken, match="nbf"):
        await verify_access_token(cfg, token, audience=API)


async def test_issuer_and_audience_must_be_given(cfg: Config) -> None:
    token = sign(cfg, claims_now(cfg))
    with pytest.raises(ValueError, match="issuer"):
        await verify_access_token(cfg.keys, token, audience=API)
    with pytest.raises(ValueError, match="audience"):
        await verify_access_token(cfg, token, audience=[])


# ------------------------------------------------------------------ header and signature


async def test_typ_tells_access_tokens_and_id_tokens_apart(cfg: Config) -> None:
    id_token = sign(cfg, claims_now(cfg, azp="web", jti=None, client_id=None), typ="JWT")
    access = sign(cfg, claims_now(cfg))
    with pytest.raises(InvalidToken, match="typ"):
        check(cfg, id_token)
    with pytest.raises(InvalidToken, match="typ"):
        check(cfg, access, ID_TOKEN_TYPE)
    assert check(cfg, id_token, ID_TOKEN_TYPE).client_id == "web"  # azp
    # RFC 9068 §4: "application/at+jwt" is the same type; media types are case-insensitive.
    assert check(cfg, sign(cfg, claims_now(cfg), typ="application/AT+JWT")).jti == "j-1"


async def test_a_key_that_is_not_ours_is_refused(cfg: Config) -> None:
    stranger = KeySet.generate("ES256")
    with pytest.raises(InvalidToken, match="kid"):
        check(cfg, stranger.signer().sign(claims_now(cfg), "at+jwt"))


async def test_our_kid_with_another_key_fails_the_signature(cfg: Config) -> None:
    stranger = KeySet.generate("ES256").signer().key
    header = {"alg": "ES256", "kid": cfg.keys.signer().kid, "typ": "at+jwt"}
    forged = raw_jws(header, json.dumps(claims_now(cfg)).encode(), stranger)
    with pytest.raises(InvalidToken, match="signature"):
        check(cfg, forged)


async def test_tampered_payload_fails_the_signature(cfg: Config) -> None:
    header, _, signature = sign(cfg, claims_now(cfg)).split(".")
    payload = b64(json.dumps(claims_now(cfg, sub="mallory")).encode())
    with pytest.raises(InvalidToken, match="signature"):
        check(cfg, f"{header}.{payload}.{signature}")


async def test_algorithm_confusion_and_none_are_refused(cfg: Config) -> None:
    kid = cfg.keys.signer().kid
    body = b64(json.dumps(claims_now(cfg)).encode())
    # HS256 keyed with the public key's JSON: the classic confusion forgery.
    public = json.dumps(cfg.keys.public_jwks()["keys"][0]).encode()
    head = b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "at+jwt"}).encode())
    mac = hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidToken, match="alg"):
        check(cfg, f"{head}.{body}.{b64(mac)}")
    none_head = b64(json.dumps({"alg": "none", "kid": kid, "typ": "at+jwt"}).encode())
    with pytest.raises(InvalidToken):
        check(cfg, f"{none_head}.{body}.")
    with pytest.raises(InvalidToken, match="alg"):
        check(cfg, f"{none_head}.{body}.AAAA")


async def test_a_critical_header_is_refused(cfg: Config) -> None:
    signer = cfg.keys.signer()
    header = {"alg": "ES256", "kid": signer.kid, "typ": "at+jwt", "crit": ["exp"], "exp": 1}
    token = raw_jws(header, json.dumps(claims_now(cfg)).encode(), signer.key)
    with pytest.raises(InvalidToken, match="crit"):
        check(cfg, token)


async def test_a_header_naming_its_own_key_is_not_trusted(cfg: Config) -> None:
    stranger = KeySet.generate("ES256").signer()
    header = {"alg": "ES256", "kid": cfg.keys.signer().kid, "typ": "at+jwt", "jwk": stranger.public_jwk()}
    token = raw_jws(header, json.dumps(claims_now(cfg)).encode(), stranger.key)
    with pytest.raises(InvalidToken, match="signature"):
        check(cfg, token)


async def test_payload_that_is_not_an_object_is_refused(cfg: Config) -> None:
    signer = cfg.keys.signer()
    for payload in (b"[1, 2]", b"not json", b'"text"'):
        token = raw_jws({"alg": "ES256", "kid": signer.kid, "typ": "at+jwt"}, payload, signer.key)
        with pytest.raises(InvalidToken, match="claims"):
            check(cfg, token)


async def test_size_is_bounded_before_parsing(cfg: Config) -> None:
    big = sign(cfg, claims_now(cfg, pad="x" * MAX_JWT_BYTES))
    with pytest.raises(InvalidToken, match="too large"):
        check(cfg, big)


@pytest.mark.parametrize(
    "token",
    ["", "a", "a.b", "a.b.c.d", "a..c", "é.b.c", "a b.c.d", "=.=.=", "eyJ.eyJ.sig", "e30.e30.", "e30.e30.e30"],
)
async def test_malformed_tokens_are_invalid_not_errors(cfg: Config, token: str) -> None:
    with pytest.raises(InvalidToken):
        check(cfg, token)


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    header=st.one_of(
        st.text(max_size=60),
        st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit"]), st.one_of(st.text(max_size=8), st.none())),
    ),
    payload=st.binary(max_size=80),
    signature=st.binary(max_size=80),
)
def test_fuzzed_tokens_only_ever_raise_invalid_token(header: Any, payload: bytes, signature: bytes) -> None:
    config = Config(issuer=ISSUER, keys=keyset("ES256"), store=MemoryStore(warn=False))
    head = json.dumps(header).encode() if isinstance(header, dict) else header.encode()
    token = f"{b64(head)}.{b64(payload)}.{b64(signature)}"
    with pytest.raises(InvalidToken):
        verify_jwt(trusted_keys(config.keys), token, token_type=ACCESS_TOKEN_TYPE, issuer=ISSUER, now=0)


@settings(max_examples=examples(200), deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_only_ever_raises_invalid_token(text: str) -> None:
    keys = TrustedKeys.from_keyset(keyset("ES256"))
    with pytest.raises(InvalidToken):
        verify_jwt(keys, text, token_type=ACCESS_TOKEN_TYPE, issuer=ISSUER, now=0)


# ------------------------------------------------------------------ revocation state through the store


async def test_with_the_store_a_revoked_token_or_family_is_refused(cfg: Config) -> None:
    one, two = await start_family(cfg), await start_family(cfg)
    store = cfg.backend
    await store.revoke_access_token(one.access_claims["jti"], one.access_claims["exp"])
    await store.revoke_family(two.family_id, cfg.clock() + 3600)
    for fam in (one, two):
        assert (await verify_access_token(cfg, fam.access_token, audience=API)).subject == "alice"  # no store asked
        with pytest.raises(InvalidToken, match="revoked"):
            await verify_access_token(cfg, fam.access_token, audience=API, store=store)
    third = await start_family(cfg)
    assert (await verify_access_token(cfg, third.access_token, audience=API, store=store)).subject == "alice"


def test_jwks_without_usable_signing_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="no verification keys"):
        TrustedKeys.from_jwks({"keys": [{"kty": "oct", "k": "AAAA", "kid": "x", "alg": "HS256"}]})
    public = keyset("ES256").public_jwks()["keys"][0]
    with pytest.raises(ValueError, match="no verification keys"):
        TrustedKeys.from_jwks({"keys": [{**public, "use": "enc"}]})
    with pytest.raises(ValueError, match="no verification keys"):
        TrustedKeys.from_jwks({"keys": [{k: v for k, v in public.items() if k != "kid"}]})

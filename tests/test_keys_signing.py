"""SigningKey.sign signs through ``cryptography`` directly; joserfc must accept every token."""

from __future__ import annotations

import base64
import json

import pytest
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet as JoseKeySet

from attesto_asgi import KeySet
from attesto_asgi.keys import SUPPORTED_ALGS

ALGS = sorted(SUPPORTED_ALGS)
_REGISTRY = jws.JWSRegistry(algorithms=ALGS)


def _public(keys: KeySet) -> JoseKeySet:
    return JoseKeySet.import_key_set(keys.public_jwks())


@pytest.fixture(scope="module")
def keysets() -> dict[str, KeySet]:
    return {alg: KeySet.generate(alg) for alg in ALGS}


@pytest.mark.parametrize("alg", ALGS)
def test_joserfc_verifies_every_algorithm(keysets: dict[str, KeySet], alg: str) -> None:
    keys = keysets[alg]
    signer = keys.signer()
    claims = {"iss": "https://as.example", "sub": "s", "n": 1, "uni": "é✓", "list": ["a", "b"]}
    token = signer.sign(claims, "at+jwt")
    verified = jwt.decode(token, _public(keys), algorithms=[alg], registry=_REGISTRY)
    assert verified.header == {"alg": alg, "kid": signer.kid, "typ": "at+jwt"}
    assert verified.claims == claims


@pytest.mark.parametrize("alg", ALGS)
def test_signatures_are_not_deterministic_copies(keysets: dict[str, KeySet], alg: str) -> None:
    # The header is prepared once per typ; the payload and signature are per token.
    signer = keysets[alg].signer()
    a = signer.sign({"jti": "1"}, "JWT")
    b = signer.sign({"jti": "2"}, "JWT")
    assert a.split(".")[0] == b.split(".")[0]
    assert a.split(".")[1] != b.split(".")[1]
    header = json.loads(base64.urlsafe_b64decode(a.split(".")[0] + "=="))
    assert header["typ"] == "JWT"


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_ecdsa_signature_is_raw_r_s_of_the_curve_size(keysets: dict[str, KeySet], alg: str) -> None:
    # RFC 7518 §3.4: R || S, each the curve's octet length (P-521: 66 octets each).
    size = {"ES256": 64, "ES384": 96, "ES512": 132}[alg]
    for _ in range(20):  # small R or S values must still be left-padded
        token = keysets[alg].signer().sign({"x": 1}, "JWT")
        sig = base64.urlsafe_b64decode(token.split(".")[2] + "==")
        assert len(sig) == size


def test_tampered_token_is_rejected_by_joserfc(keysets: dict[str, KeySet]) -> None:
    keys = keysets["ES256"]
    token = keys.signer().sign({"sub": "alice"}, "at+jwt")
    header, _, sig = token.split(".")
    forged_payload = base64.urlsafe_b64encode(b'{"sub":"mallory"}').rstrip(b"=").decode()
    with pytest.raises(BadSignatureError):
        jwt.decode(f"{header}.{forged_payload}.{sig}", _public(keys), algorithms=["ES256"], registry=_REGISTRY)


def test_other_keys_signature_is_rejected(keysets: dict[str, KeySet]) -> None:
    token = KeySet.generate("ES256").signer().sign({"sub": "a"}, "JWT")
    with pytest.raises(BadSignatureError):
        # Verified with the key itself: the other key's kid must not be what rejects it.
        jwt.decode(token, _public(keysets["ES256"]).keys[0], algorithms=["ES256"], registry=_REGISTRY)

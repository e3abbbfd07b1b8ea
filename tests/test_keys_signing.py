"""SigningKey.sign signs through ``cryptography`` directly; joserfc must accept every token."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet as JoseKeySet

from attesto_asgi import KeySet
from attesto_asgi.keys import SUPPORTED_ALGS, _ecdsa_raw
from tests.helpers import examples

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


_ORDERS = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


@pytest.mark.parametrize("alg", sorted(_ORDERS))
@given(data=st.data())
@settings(max_examples=examples(200), deadline=None)
def test_ecdsa_raw_equals_decode_dss_signature(alg: str, data: st.DataObject) -> None:
    # Every (r, s) shape: tiny values (short INTEGERs, padded), top bit set (a 0x00 prefix),
    # the curve's full width; on P-521 the SEQUENCE takes a long-form length.
    size = (_ORDERS[alg].key_size + 7) // 8
    values = st.one_of(st.integers(1, 2**16), st.integers(1, 2 ** (8 * size) - 1), st.just(2 ** (8 * size) - 1))
    r, s = data.draw(values), data.draw(values)
    raw = _ecdsa_raw(encode_dss_signature(r, s), size)
    assert raw == r.to_bytes(size, "big") + s.to_bytes(size, "big")


@pytest.mark.parametrize("alg", sorted(_ORDERS))
def test_ecdsa_raw_of_real_signatures(alg: str) -> None:
    key = ec.generate_private_key(_ORDERS[alg]())
    size = (key.curve.key_size + 7) // 8
    for i in range(300):
        der = key.sign(b"%d" % i, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        assert _ecdsa_raw(der, size) == r.to_bytes(size, "big") + s.to_bytes(size, "big")


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"\x30",
        b"\x31\x06\x02\x01\x01\x02\x01\x01",  # not a SEQUENCE
        b"\x30\x06\x04\x01\x01\x02\x01\x01",  # not an INTEGER
        b"\x30\x07\x02\x01\x01\x02\x01\x01",  # SEQUENCE length off by one
        b"\x30\x06\x02\x02\x01\x02\x01\x01",  # r's length runs into s
        b"\x30\x06\x02\x01\x01\x02\x02\x01",  # s's length past the end
        b"\x30\x82\x00\x06\x02\x01\x01\x02\x01\x01",  # a length form no ECDSA signature uses
    ],
)
def test_ecdsa_raw_refuses_what_is_not_a_signature(der: bytes) -> None:
    with pytest.raises(ValueError, match="not a DER ECDSA signature"):
        _ecdsa_raw(der, 32)


def test_ecdsa_raw_refuses_a_value_wider_than_the_curve() -> None:
    with pytest.raises(ValueError, match="longer than the curve's"):
        _ecdsa_raw(encode_dss_signature(2**256, 1), 32)

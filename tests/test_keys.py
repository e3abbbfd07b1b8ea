import base64
import hashlib
import json

import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from joserfc.jwk import KeySet as JoseKeySet

from attesto_asgi import KeySet
from attesto_asgi.keys import SUPPORTED_ALGS, SigningKey
from tests.helpers import keyset

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def rfc7638_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, no whitespace."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256", "PS256"])
def test_generated_key_signs_and_verifies_with_published_jwks(alg: str) -> None:
    keys = keyset(alg)
    token = keys.signer().sign({"hello": "world"}, "JWT")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": alg, "kid": keys.signer().kid, "typ": "JWT"}
    published = JoseKeySet.import_key_set(keys.public_jwks())
    verified = jws.deserialize_compact(token, published, algorithms=[alg])
    assert json.loads(verified.payload) == {"hello": "world"}


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256", "PS256"])
def test_kid_is_the_rfc7638_thumbprint_and_jwks_is_public_only(alg: str) -> None:
    keys = keyset(alg)
    (jwk,) = keys.public_jwks()["keys"]
    assert jwk["kid"] == rfc7638_thumbprint(jwk)
    assert jwk["alg"] == alg
    assert jwk["use"] == "sig"
    assert not PRIVATE_MEMBERS & set(jwk)


def test_several_keys_all_published_first_is_active() -> None:
    keys = KeySet.generate("ES256", "EdDSA")
    assert keys.active_alg == "ES256"
    assert keys.algorithms == ("ES256", "EdDSA")
    assert [k["alg"] for k in keys.public_jwks()["keys"]] == ["ES256", "EdDSA"]
    assert keys.signer("EdDSA").alg == "EdDSA"
    with pytest.raises(ValueError, match="no signing key"):
        keys.signer("RS256")


def test_private_jwks_round_trip_keeps_kids_and_signing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys = KeySet.generate("ES256", "EdDSA")
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(keys.private_jwks()))
    loaded = KeySet.load(path, active_alg="EdDSA")
    assert [k.kid for k in loaded] == [k.kid for k in keys]
    assert loaded.active_alg == "EdDSA"
    token = loaded.signer().sign({"a": 1}, "JWT")
    jws.deserialize_compact(token, JoseKeySet.import_key_set(keys.public_jwks()), algorithms=["EdDSA"])


def test_rotation_old_key_stays_published_new_key_signs() -> None:
    old = KeySet.generate("ES256")
    new_key = SigningKey(ECKey.generate_key("P-256"), "ES256")
    rotated = KeySet([new_key, *old])
    assert rotated.signer().kid == new_key.kid
    old_token = old.signer().sign({"a": 1}, "JWT")
    published = JoseKeySet.import_key_set(rotated.public_jwks())
    jws.deserialize_compact(old_token, published, algorithms=["ES256"])


def test_bad_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot sign"):
        SigningKey(ECKey.generate_key("P-256"), "RS256")
    with pytest.raises(ValueError, match="private"):
        SigningKey(ECKey.import_key(ECKey.generate_key("P-256").as_dict(private=False)), "ES256")
    with pytest.raises(ValueError, match="alg"):
        KeySet.from_jwks({"keys": [ECKey.generate_key("P-256").as_dict(private=True)]})
    with pytest.raises(ValueError, match="unsupported"):
        SigningKey(ECKey.generate_key("P-256"), "none")
    assert "HS256" not in SUPPORTED_ALGS


def test_one_key_for_two_algorithms_is_refused() -> None:
    # RFC 7517 §4.5: distinct keys, distinct kids. The kid is the key's thumbprint, so one RSA
    # key given for RS256 and PS256 would publish one kid twice, and a verifier keeps one
    # algorithm per kid: the other algorithm's tokens would fail to verify.
    private = KeySet.generate("RS256").private_jwks()["keys"][0]
    with pytest.raises(ValueError, match="one algorithm per key"):
        KeySet.from_jwks({"keys": [dict(private, alg="RS256"), dict(private, alg="PS256")]})


def test_only_public_members_are_published() -> None:
    # A member the host put on its private JWK (a note, key_ops) never reaches the JWKS.
    private = KeySet.generate("ES256").private_jwks()["keys"][0]
    ks = KeySet.from_jwks({"keys": [dict(private, x_secret="TOPSECRET", key_ops=["sign"])]})
    [published] = ks.public_jwks()["keys"]
    assert set(published) == {"kty", "crv", "x", "y", "kid", "alg", "use"}

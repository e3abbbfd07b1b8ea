"""verify_client_secret: decoded stored hashes are cached; the answers must not change."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attesto_asgi import Client
from attesto_asgi._secrets import b64url, hash_client_secret, new_id, new_token, verify_client_secret
from attesto_asgi.core.client_auth import _parse_basic


def test_right_secret_passes_and_wrong_ones_fail_repeatedly() -> None:
    stored = hash_client_secret("correct horse battery staple")
    for _ in range(3):  # the second and later calls use the cached decoding
        assert verify_client_secret(stored, "correct horse battery staple")
        assert not verify_client_secret(stored, "correct horse battery stapler")
        assert not verify_client_secret(stored, "")


def test_two_clients_with_the_same_secret_have_distinct_hashes() -> None:
    a, b = hash_client_secret("same"), hash_client_secret("same")
    assert a != b
    assert verify_client_secret(a, "same")
    assert verify_client_secret(b, "same")
    assert not verify_client_secret(a, "other")


def test_the_stored_hash_is_keyed_blake2s_of_the_secret() -> None:
    # Recomputed with hashlib alone: blake2s$<base64url key>$<base64url BLAKE2s-256(secret, key)>.
    key = bytes(range(16))
    stored = hash_client_secret("s3cret", salt=key)
    prefix, key_b64, mac_b64 = stored.split("$")
    assert prefix == "blake2s"
    assert key_b64 == b64url(key)
    assert mac_b64 == b64url(hashlib.blake2s(b"s3cret", key=key).digest())
    assert verify_client_secret(stored, "s3cret")


def test_a_secret_hashed_in_the_earlier_hmac_sha256_format_still_verifies() -> None:
    # What hash_client_secret produced before 2026-11-28: HMAC-SHA256 keyed with a random salt.
    salt = bytes(range(16))
    stored = f"hmac-sha256${b64url(salt)}${b64url(hmac.new(salt, b'from-a-file', hashlib.sha256).digest())}"
    assert Client(client_id="legacy", client_secret=stored).client_secret == stored  # kept, not re-hashed
    for _ in range(2):  # the second call uses the cached decoding
        assert verify_client_secret(stored, "from-a-file")
        assert not verify_client_secret(stored, "from-a-file ")
        assert not verify_client_secret(stored, "")


@pytest.mark.parametrize(
    "stored",
    [
        f"blake2s${b64url(bytes(40))}${b64url(bytes(32))}",  # a key BLAKE2s refuses (over 32 bytes)
        f"blake2s${b64url(bytes(16))}${b64url(bytes(31))}",  # a MAC of the wrong length
        f"hmac-sha256${b64url(bytes(16))}$",  # no MAC at all
    ],
)
def test_a_malformed_stored_hash_fails_when_the_client_is_built(stored: str) -> None:
    # Not in a request (where it would be a 500): at start-up, with the client named.
    with pytest.raises(ValueError, match="'bad': client_secret is a malformed hash"):
        Client(client_id="bad", client_secret=stored)


def test_unknown_client_or_unhashed_value_never_passes() -> None:
    assert not verify_client_secret(None, "anything")
    # A value that is not a hash (a misconfigured store) is compared against the dummy hash.
    assert not verify_client_secret("plain-text-secret", "plain-text-secret")


def test_basic_credentials_are_form_decoded_only_when_encoded() -> None:
    import base64

    def header(raw: str) -> str:
        return "Basic " + base64.b64encode(raw.encode()).decode()

    # RFC 6749 §2.3.1: id and secret are application/x-www-form-urlencoded before base64.
    assert _parse_basic(header("my%3Aclient:p%40ss+word")) == ("my:client", "p@ss word")
    assert _parse_basic(header("plain:secret")) == ("plain", "secret")
    assert _parse_basic(header("no-colon")) is None
    assert _parse_basic("Bearer abc") is None


@pytest.mark.parametrize(
    "value",
    [
        "Basic \u00fcser:pass",  # a latin-1 header byte outside base64's alphabet
        "Basic cGxhaW46c2VjcmV0=cGxhaW4=",  # data after padding (strict base64)
        "Basic cGxhaW4 6c2VjcmV0",  # a space inside the value
        "Basic cGxhaW46c2VjcmV",  # truncated: bad padding
        "Basic //79",  # decodes to bytes that are not UTF-8
        "Basic ",
    ],
)
def test_malformed_basic_credentials_are_refused(value: str) -> None:
    assert _parse_basic(value) is None


@given(st.binary(max_size=200))
def test_b64url_is_rfc4648_base64url_without_padding(data: bytes) -> None:
    assert b64url(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_new_secrets_are_fresh_base64url_of_the_documented_size() -> None:
    tokens = {new_token() for _ in range(200)}
    ids = {new_id() for _ in range(200)}
    assert len(tokens) == 200
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", t) for t in tokens)  # 256 bits
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in ids)  # 128 bits

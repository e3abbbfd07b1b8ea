"""AEAD sealing of grace-window successors: round trip, binding, tampering, key separation."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from attesto_asgi.core.seal import SEAL_VERSION, seal, sealer, unseal

KEY = b"k" * 32
AD = "hash-of-the-rotated-token"


def test_round_trip() -> None:
    aead = sealer(KEY)
    sealed = seal(aead, b"successor", AD)
    assert unseal(aead, sealed, AD) == b"successor"


def test_layout_and_no_plaintext() -> None:
    sealed = seal(sealer(KEY), b"successor-token-value", AD)
    assert sealed.startswith(SEAL_VERSION)
    assert len(sealed) == 1 + 12 + len(b"successor-token-value") + 16
    assert b"successor" not in sealed


def test_fresh_nonce_every_time() -> None:
    aead = sealer(KEY)
    assert seal(aead, b"x", AD) != seal(aead, b"x", AD)


def test_bound_to_the_associated_data() -> None:
    aead = sealer(KEY)
    assert unseal(aead, seal(aead, b"successor", AD), "hash-of-another-token") is None


def test_another_server_key_does_not_open() -> None:
    assert unseal(sealer(b"j" * 32), seal(sealer(KEY), b"successor", AD), AD) is None


def test_key_is_derived_not_used_raw() -> None:
    """The AEAD key is HKDF output, so the raw secret_key does not open a sealed value."""
    sealed = seal(sealer(KEY), b"successor", AD)
    raw = AESGCM(KEY)
    with pytest.raises(InvalidTag):
        raw.decrypt(sealed[1:13], sealed[13:], AD.encode())


def test_key_derivation_happens_once_per_secret() -> None:
    assert sealer(KEY) is sealer(KEY)
    assert sealer(KEY) is not sealer(b"j" * 32)


@pytest.mark.parametrize("position", [0, 1, 12, 13, -1])
def test_any_altered_byte_is_refused(position: int) -> None:
    aead = sealer(KEY)
    sealed = bytearray(seal(aead, b"successor", AD))
    sealed[position] ^= 0x01
    assert unseal(aead, bytes(sealed), AD) is None


@pytest.mark.parametrize("value", [b"", b"\x01", SEAL_VERSION + b"\x00" * 27, b"\x02" + b"\x00" * 40])
def test_short_or_foreign_values_are_refused(value: bytes) -> None:
    assert unseal(sealer(KEY), value, AD) is None

"""AEAD sealing of a rotated refresh token's successor, for the rotation grace window.

Inside the grace window a retry of the token just rotated gets the *same* successor back,
so the store must be able to give it back, yet never holds it in the clear. The successor
is sealed with AES-256-GCM under a key derived once (HKDF-SHA256) from
``Config.secret_key``; the associated data is the rotated token's storage hash, so a
sealed value copied onto another record does not open. A dump of the store therefore
yields nothing usable without the server's secret key.

Layout of a sealed value: one version byte, a random 96-bit nonce, the ciphertext with
its 128-bit tag.
"""

from __future__ import annotations

import functools
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SEAL_VERSION", "sealer", "seal", "unseal"]

SEAL_VERSION: Final = b"\x01"
_NONCE_BYTES: Final = 12  # NIST SP 800-38D §8.2.2: random 96-bit IVs
_INFO: Final = b"attesto-asgi/v1 refresh successor seal"


@functools.lru_cache(maxsize=16)
def sealer(secret_key: bytes) -> AESGCM:
    """The AEAD for a server secret: derived once per key, then reused by every request."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret_key)
    return AESGCM(key)


def seal(aead: AESGCM, plaintext: bytes, associated: str) -> bytes:
    """Encrypt and authenticate ``plaintext``, bound to ``associated`` (the old token's hash)."""
    nonce = os.urandom(_NONCE_BYTES)
    return SEAL_VERSION + nonce + aead.encrypt(nonce, plaintext, associated.encode("ascii"))


def unseal(aead: AESGCM, sealed: bytes, associated: str) -> bytes | None:
    """The plaintext, or None when the value was sealed under another key, for another
    record, in another format, or was altered."""
    if not sealed.startswith(SEAL_VERSION) or len(sealed) < 1 + _NONCE_BYTES + 16:
        return None
    nonce = sealed[1 : 1 + _NONCE_BYTES]
    try:
        return aead.decrypt(nonce, sealed[1 + _NONCE_BYTES :], associated.encode("ascii"))
    except InvalidTag:
        return None

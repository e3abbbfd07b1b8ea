"""Tiny pure helpers for secrets: generation, hashing, constant-time checks.

Bearer secrets (codes, refresh tokens) are 256-bit random values, so one unkeyed SHA-256
is a sufficient one-way storage key. Client secrets are checked with a salted HMAC-SHA256
(a fast keyed hash, not a password KDF: generated client secrets are high-entropy, and a
KDF would cap the endpoint at a few hundred requests per second; see docs/security.md).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import secrets

__all__ = [
    "HASH_PREFIX",
    "b64url",
    "b64url_bytes",
    "hash_client_secret",
    "is_hashed_secret",
    "new_id",
    "new_token",
    "token_hash",
    "verify_client_secret",
]

HASH_PREFIX = "hmac-sha256$"


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url_bytes(data: bytes) -> bytes:
    """RFC 4648 §5 base64url without padding (RFC 7515 §2), in one C call and a translate:
    on the hot path, ``base64.urlsafe_b64encode`` costs two more Python frames per call."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def b64url(data: bytes) -> str:
    return b64url_bytes(data).decode("ascii")


def new_token() -> str:
    """A fresh 256-bit bearer secret, base64url without padding (43 characters). ``os.urandom``
    is what ``secrets.token_urlsafe`` reads too (the OS CSPRNG), without its extra frames."""
    return b64url(os.urandom(32))


def new_id() -> str:
    """A fresh 128-bit identifier (family ids, ``jti``), base64url (22 characters)."""
    return b64url(os.urandom(16))


def token_hash(token: str) -> str:
    """The storage key of a bearer secret: base64url(SHA-256(token))."""
    return b64url(hashlib.sha256(token.encode("utf-8")).digest())


def hash_client_secret(secret: str, *, salt: bytes | None = None) -> str:
    """``hmac-sha256$<salt>$<mac>``: HMAC-SHA256 of the secret keyed with a random salt."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    mac = hmac.new(salt, secret.encode("utf-8"), hashlib.sha256).digest()
    return f"{HASH_PREFIX}{b64url(salt)}${b64url(mac)}"


def is_hashed_secret(value: str) -> bool:
    return value.startswith(HASH_PREFIX) and value.count("$") == 2


def _b64decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# Compared against when the client is unknown, so an unknown client costs the same work.
_DUMMY_HASH = hash_client_secret(secrets.token_urlsafe(32))


def verify_client_secret(stored: str | None, presented: str) -> bool:
    """Constant-time check of ``presented`` against a ``hash_client_secret`` value.

    ``stored=None`` (unknown client, or a client without a secret) does the same work
    against a dummy hash and returns False.
    """
    target = stored if stored is not None and is_hashed_secret(stored) else _DUMMY_HASH
    keyed, expected = _decoded(target)
    mac = keyed.copy()
    mac.update(presented.encode("utf-8", "surrogatepass"))
    ok = hmac.compare_digest(mac.digest(), expected)
    return ok and target is stored


@functools.lru_cache(maxsize=4096)
def _decoded(stored: str) -> tuple[hmac.HMAC, bytes]:
    """An HMAC already keyed with the stored salt, and the expected MAC: prepared once per
    registered secret, not per request (copying a keyed HMAC skips the key schedule)."""
    _, salt_b64, mac_b64 = stored.split("$")
    return hmac.new(_b64decode(salt_b64), digestmod=hashlib.sha256), _b64decode(mac_b64)

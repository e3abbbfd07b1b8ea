"""Tiny pure helpers for secrets: generation, hashing, constant-time checks.

Bearer secrets (codes, refresh tokens) are 256-bit random values, so one unkeyed SHA-256
is a sufficient one-way storage key. Client secrets are checked with keyed BLAKE2s-256
(RFC 7693 keyed mode, a MAC by design) under a random 16-byte key per secret: a fast keyed
hash, not a password KDF (generated client secrets are high-entropy, and a KDF would cap
the endpoint at a few hundred requests per second; see docs/security.md). Hashes in the
earlier ``hmac-sha256$`` format are still verified.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from typing import Final, Protocol

__all__ = [
    "HASH_PREFIX",
    "b64url",
    "b64url_bytes",
    "hash_client_secret",
    "is_hashed_secret",
    "new_id",
    "new_token",
    "token_hash",
    "usable_hashed_secret",
    "verify_client_secret",
]

HASH_PREFIX: Final = "blake2s$"
# Produced before 2026-11-28 (HMAC-SHA256 under the same kind of random key); verified, not produced.
_HMAC_PREFIX: Final = "hmac-sha256$"

# The library functions the token path calls, bound once. In the compiled build a Final name
# is a C static; ``binascii.b2a_base64`` there is a lookup on the module at every call (19
# such lookups a code redemption before this).
_b2a_base64: Final = binascii.b2a_base64
_urandom: Final = os.urandom
_sha256: Final = hashlib.sha256
_compare_digest: Final = hmac.compare_digest
_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")


def b64url_bytes(data: bytes) -> bytes:
    """RFC 4648 §5 base64url without padding (RFC 7515 §2), in one C call and a translate:
    on the hot path, ``base64.urlsafe_b64encode`` costs two more Python frames per call."""
    return _b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def b64url(data: bytes) -> str:
    return b64url_bytes(data).decode("ascii")


def new_token() -> str:
    """A fresh 256-bit bearer secret, base64url without padding (43 characters). ``os.urandom``
    is what ``secrets.token_urlsafe`` reads too (the OS CSPRNG), without its extra frames."""
    return b64url(_urandom(32))


def new_id() -> str:
    """A fresh 128-bit identifier (family ids, ``jti``), base64url (22 characters)."""
    return b64url(_urandom(16))


def token_hash(token: str) -> str:
    """The storage key of a bearer secret: base64url(SHA-256(token))."""
    return b64url(_sha256(token.encode("utf-8")).digest())


def hash_client_secret(secret: str, *, salt: bytes | None = None) -> str:
    """``blake2s$<key>$<mac>``: BLAKE2s-256 of the secret keyed with ``salt`` (at most 32
    bytes; by default 16 random bytes)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    mac = hashlib.blake2s(secret.encode("utf-8"), key=salt).digest()
    return f"{HASH_PREFIX}{b64url(salt)}${b64url(mac)}"


def is_hashed_secret(value: str) -> bool:
    return value.startswith(_PREFIXES) and value.count("$") == 2


def usable_hashed_secret(value: str) -> bool:
    """Whether a ``hash_client_secret``-shaped value can be verified against: its key
    decodes to one the MAC accepts, and its MAC to 32 bytes. Checked when a ``Client`` is
    built, so a malformed stored hash fails at start-up instead of in a request."""
    if not is_hashed_secret(value):
        return False
    try:
        _, expected = _decoded(value)
    except ValueError:  # binascii.Error, or a BLAKE2s key over 32 bytes
        return False
    return len(expected) == 32


def _b64decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# Compared against when the client is unknown, so an unknown client costs the same work.
_DUMMY_HASH: Final = hash_client_secret(secrets.token_urlsafe(32))


def verify_client_secret(stored: str | None, presented: str) -> bool:
    """Constant-time check of ``presented`` against a ``hash_client_secret`` value.

    ``stored=None`` (unknown client, or a client without a secret) does the same work
    against a dummy hash and returns False.
    """
    target = stored if stored is not None and is_hashed_secret(stored) else _DUMMY_HASH
    keyed, expected = _decoded(target)
    mac = keyed.copy()
    mac.update(presented.encode("utf-8", "surrogatepass"))
    ok = _compare_digest(mac.digest(), expected)
    return ok and target is stored


class _Keyed(Protocol):
    """A MAC already keyed: ``hashlib.blake2s(key=...)`` or ``hmac.HMAC``."""

    def copy(self) -> _Keyed: ...

    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


# The MAC of each stored format, by its name (the prefix without its "$").
_KEYED: dict[str, Callable[[bytes], _Keyed]] = {
    HASH_PREFIX[:-1]: lambda key: hashlib.blake2s(key=key),
    _HMAC_PREFIX[:-1]: lambda key: hmac.new(key, digestmod=hashlib.sha256),  # the earlier format, still verified
}
_PREFIXES: Final = tuple(f"{name}$" for name in _KEYED)


@functools.lru_cache(maxsize=4096)
def _decoded(stored: str) -> tuple[_Keyed, bytes]:
    """The MAC already keyed with the stored key, and the expected value: prepared once per
    registered secret, not per request (a copy skips the key schedule). Keyed BLAKE2s costs
    about a third of OpenSSL's HMAC here: 10,000-14,000 fewer instructions a request
    (callgrind)."""
    prefix, salt_b64, mac_b64 = stored.split("$")
    key = _b64decode(salt_b64)
    return _KEYED[prefix](key), _b64decode(mac_b64)

"""PKCE (RFC 7636): tiny pure checks. S256 only; ``plain`` is refused (RFC 9700 §2.1.1)."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

from .._secrets import b64url

__all__ = ["S256", "challenge_well_formed", "s256_challenge", "verifier_matches", "verifier_well_formed"]

S256: Final = "S256"

# C statics when compiled, not lookups on the modules at every call (_secrets.py).
_sha256: Final = hashlib.sha256
_compare_digest: Final = hmac.compare_digest

# RFC 7636 §4.1: code-verifier = 43*128unreserved; unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
_VERIFIER: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# RFC 7636 §4.2: S256 challenge = BASE64URL(SHA256(verifier)), which is always 43 characters.
_S256_CHALLENGE: Final = re.compile(r"[A-Za-z0-9_-]{43}")


def verifier_well_formed(verifier: str) -> bool:
    return _VERIFIER.fullmatch(verifier) is not None


def challenge_well_formed(challenge: str) -> bool:
    return _S256_CHALLENGE.fullmatch(challenge) is not None


def s256_challenge(verifier: str) -> str:
    """RFC 7636 §4.2: ``BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))``."""
    return b64url(_sha256(verifier.encode("ascii")).digest())


def verifier_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6: a well-formed verifier whose S256 transform equals the challenge
    (compared in constant time)."""
    if not verifier_well_formed(verifier):
        return False
    return _compare_digest(s256_challenge(verifier).encode("ascii"), challenge.encode("ascii", "replace"))

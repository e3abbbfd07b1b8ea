"""The provider's users: a small JSON file of scrypt-hashed passwords.

The file maps a username to ``{"sub", "password", "name", "email", "email_verified"}``;
``password`` is ``scrypt$<log2 n>$<r>$<p>$<salt>$<hash>`` (base64url). Make a hash with

    python -m examples.provider.users 'my new password'

A real provider keeps users in a database and rate-limits logins; the checks here are the
same ones it needs: a memory-hard KDF, a constant-time compare, and the same work for an
unknown username as for a wrong password (no user enumeration by timing).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = ["User", "UserDirectory", "hash_password", "verify_password"]

# scrypt parameters: n = 2**14, r = 8, p = 1 (16 MiB, the RFC 7914 interactive-login example).
_LOG_N: Final = 14
_R: Final = 8
_P: Final = 1
_DKLEN: Final = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 1024, dklen=_DKLEN)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _LOG_N, _R, _P)
    return f"scrypt${_LOG_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against ``hash_password``'s output."""
    try:
        scheme, log_n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt" or not 10 <= int(log_n) <= 20:
            return False
        computed = _scrypt(password, _unb64(salt), int(log_n), int(r), int(p))
        return hmac.compare_digest(computed, _unb64(digest))
    except (ValueError, TypeError):
        return False


@dataclass(frozen=True, kw_only=True)
class User:
    username: str
    sub: str
    password_hash: str = field(repr=False)
    name: str
    email: str
    email_verified: bool = False

    def claims(self, scope: tuple[str, ...]) -> dict[str, Any]:
        """OIDC Core §5.4: the claims each requested scope value stands for."""
        out: dict[str, Any] = {"sub": self.sub}
        if "profile" in scope:
            out.update(name=self.name, preferred_username=self.username)
        if "email" in scope:
            out.update(email=self.email, email_verified=self.email_verified)
        return out


class UserDirectory:
    """Users loaded once from the JSON file."""

    def __init__(self, users: dict[str, User]) -> None:
        self._by_name = users
        self._by_sub = {u.sub: u for u in users.values()}
        # Checked when the username is unknown, so that case costs one scrypt as well.
        self._dummy_hash = hash_password(secrets.token_urlsafe(16))

    @classmethod
    def load(cls, path: str | Path) -> UserDirectory:
        raw = json.loads(Path(path).read_text("utf-8"))
        users = {
            name: User(
                username=name,
                sub=entry["sub"],
                password_hash=entry["password"],
                name=entry["name"],
                email=entry["email"],
                email_verified=bool(entry.get("email_verified", False)),
            )
            for name, entry in raw.items()
        }
        return cls(users)

    def authenticate(self, username: str, password: str) -> User | None:
        user = self._by_name.get(username)
        ok = verify_password(password, user.password_hash if user else self._dummy_hash)
        return user if ok and user is not None else None

    def by_sub(self, sub: str) -> User | None:
        return self._by_sub.get(sub)


if __name__ == "__main__":  # python -m examples.provider.users 'password'
    if len(sys.argv) != 2:
        sys.exit("usage: python -m examples.provider.users PASSWORD")
    print(hash_password(sys.argv[1]))

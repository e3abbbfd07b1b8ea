"""``KeySet``: the server's private signing keys, loaded or generated once at start-up.

Every key has ``kid`` = its RFC 7638 thumbprint and one ``alg``. One key signs per
algorithm (the first given for it); the ``active`` algorithm is the default. Every key is
published in the JWKS, so tokens signed before a rotation still verify.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jwk import KeySet as _JoseKeySet

from ._secrets import b64url_bytes

__all__ = ["SUPPORTED_ALGS", "KeySet", "SigningKey"]

JoseKey = ECKey | OKPKey | RSAKey

# alg -> (key type, curve or None, hash name used for at_hash / c_hash: OIDC Core §3.1.3.6)
SUPPORTED_ALGS: Final[dict[str, tuple[str, str | None]]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
}

_HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


# A C static in the compiled build, not a lookup on the module at every call (_secrets.py).
_json_encode: Final = msgspec.json.encode


def _ecdsa_raw(der: bytes, size: int) -> bytes:
    """RFC 7518 §3.4: R and S as ``size``-octet big-endian integers, concatenated, from the
    DER ``SEQUENCE { INTEGER r, INTEGER s }`` that ``cryptography`` returns (RFC 3279
    §2.2.3). A few slices instead of ``decode_dss_signature`` and two ``int.to_bytes``:
    0.9 against 2.8 µs on the 2026-11-29 VM, per token. Input not shaped as that SEQUENCE
    (its tags and lengths) raises ``ValueError``; the integers themselves are checked only
    against the curve's width, since the input is ``cryptography``'s own signature."""
    n = len(der)
    # The SEQUENCE's length is one octet up to 127 (P-256, P-384), 0x81 and one more (P-521).
    at = 3 if n > 1 and der[1] < 0x80 else 4
    if n < 8 or der[0] != 0x30 or der[at - 1] != 0x02 or (at == 4 and der[1] != 0x81) or n != der[at - 2] + at - 1:
        raise ValueError("not a DER ECDSA signature")
    r_end = at + 1 + der[at]
    if r_end + 2 > n or der[r_end] != 0x02 or r_end + 2 + der[r_end + 1] != n:
        raise ValueError("not a DER ECDSA signature")
    # A DER INTEGER drops leading zero octets and prefixes 0x00 when the top bit is set.
    r = der[at + 1 : r_end].lstrip(b"\0")
    s = der[r_end + 2 :].lstrip(b"\0")
    if len(r) > size or len(s) > size:
        raise ValueError("ECDSA signature value longer than the curve's")
    return r.rjust(size, b"\0") + s.rjust(size, b"\0")


def _raw_signer(key: JoseKey, alg: str) -> Callable[[bytes], bytes]:
    """The JWS signature function of ``alg`` (RFC 7518 §3) on the key's ``cryptography``
    object, built once: signing through joserfc costs about twice as much per token."""
    private: Any = key.private_key
    if alg == "EdDSA":  # RFC 8037 §3.1: the Ed25519 signature as is
        sign: Callable[[bytes], bytes] = private.sign
        return sign
    digest = _HASHES[alg[2:]]()
    if alg.startswith("ES"):
        # RFC 7518 §3.4: R and S as fixed-length big-endian octets, concatenated (not DER).
        ecdsa = ECDSA(digest)
        size = (private.curve.key_size + 7) // 8

        def sign_ec(data: bytes) -> bytes:
            return _ecdsa_raw(private.sign(data, ecdsa), size)

        return sign_ec
    # RFC 7518 §3.3 RSASSA-PKCS1-v1_5; §3.5 RSASSA-PSS with MGF1 and a salt as long as the hash.
    pad = padding.PKCS1v15() if alg.startswith("RS") else padding.PSS(padding.MGF1(digest), digest.digest_size)
    return lambda data: private.sign(data, pad, digest)


_PUBLIC_MEMBERS: Final = frozenset({"kty", "crv", "x", "y", "n", "e", "x5c", "x5t", "x5t#S256"})


class SigningKey:
    """One private key with its algorithm and ``kid``; signs compact JWS."""

    __slots__ = ("_headers", "_sign", "alg", "key", "kid")

    def __init__(self, key: JoseKey, alg: str) -> None:
        if alg not in SUPPORTED_ALGS:
            raise ValueError(f"unsupported signing algorithm {alg!r}")
        kty, crv = SUPPORTED_ALGS[alg]
        if key.key_type != kty or (crv is not None and key.get("crv") != crv):
            raise ValueError(f"key of type {key.key_type} cannot sign {alg}")
        if not key.is_private:
            raise ValueError("a signing key must be private")
        self.key = key
        self.alg = alg
        self.kid = key.thumbprint()
        self._sign = _raw_signer(key, alg)
        self._headers: dict[str, bytes] = {}

    def sign(self, claims: Mapping[str, Any], typ: str) -> str:
        """The compact JWS (RFC 7515 §7.1) of ``claims`` with header ``alg``, ``kid``, ``typ``."""
        header = self._headers.get(typ)
        if header is None:
            header = b64url_bytes(_json_encode({"alg": self.alg, "kid": self.kid, "typ": typ})) + b"."
            self._headers[typ] = header
        signing_input = header + b64url_bytes(_json_encode(claims))
        return (signing_input + b"." + b64url_bytes(self._sign(signing_input))).decode("ascii")

    def public_jwk(self) -> dict[str, Any]:
        # Only the public key's own members (RFC 7518 §6, RFC 8037 §2) and the certificate
        # chain: a member the host added to the private JWK is never published.
        jwk = {k: v for k, v in self.key.as_dict(private=False).items() if k in _PUBLIC_MEMBERS}
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    def __repr__(self) -> str:
        return f"SigningKey(alg={self.alg!r}, kid={self.kid!r})"


def _generate(alg: str) -> JoseKey:
    kty, crv = SUPPORTED_ALGS[alg]
    if kty == "EC":
        return ECKey.generate_key(crv)
    if kty == "OKP":
        return OKPKey.generate_key("Ed25519")
    return RSAKey.generate_key(2048)


class KeySet:
    """The server's keys. ``KeySet.generate("ES256")`` for development; ``KeySet.load(path)``
    or ``KeySet.from_jwks(dict)`` for private JWKs kept by the host (each with ``alg``)."""

    __slots__ = ("_by_alg", "_keys", "_public", "active_alg")

    def __init__(self, keys: Sequence[SigningKey], *, active_alg: str | None = None) -> None:
        if not keys:
            raise ValueError("a KeySet needs at least one key")
        self._keys = tuple(keys)
        by_alg: dict[str, SigningKey] = {}
        algs_of: dict[str, str] = {}
        for k in self._keys:
            by_alg.setdefault(k.alg, k)
            # kid is the key's thumbprint, the same for every algorithm: one key serving two
            # would publish one kid twice, and a verifier keeps one algorithm per kid.
            if algs_of.setdefault(k.kid, k.alg) != k.alg:
                raise ValueError(f"key {k.kid} is given for both {algs_of[k.kid]} and {k.alg}: one algorithm per key")
        self._by_alg = by_alg
        self.active_alg = active_alg or self._keys[0].alg
        if self.active_alg not in by_alg:
            raise ValueError(f"no key for the active algorithm {self.active_alg!r}")
        self._public = {"keys": [k.public_jwk() for k in self._keys]}

    @classmethod
    def generate(cls, *algs: str) -> KeySet:
        """Fresh keys, one per algorithm (default ES256); the first is active."""
        algs = algs or ("ES256",)
        return cls([SigningKey(_generate(a), a) for a in algs])

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any], *, active_alg: str | None = None) -> KeySet:
        """Private JWKs; each needs an ``alg`` member (RFC 7517 §4.4)."""
        imported = _JoseKeySet.import_key_set(cast(Any, dict(jwks)))
        keys: list[SigningKey] = []
        for key in imported.keys:
            alg = key.get("alg")
            if not isinstance(alg, str):
                raise ValueError("each private JWK needs an 'alg' member")
            if not isinstance(key, ECKey | OKPKey | RSAKey):
                raise ValueError("signing keys are EC, OKP or RSA keys")
            keys.append(SigningKey(key, alg))
        return cls(keys, active_alg=active_alg)

    @classmethod
    def load(cls, path: str | Path, *, active_alg: str | None = None) -> KeySet:
        return cls.from_jwks(json.loads(Path(path).read_text("utf-8")), active_alg=active_alg)

    def private_jwks(self) -> dict[str, Any]:
        """The private JWKs, for saving with ``KeySet.load`` later. Keep the file secret."""
        out = []
        for k in self._keys:
            jwk = dict(k.key.as_dict(private=True))
            jwk.update(kid=k.kid, alg=k.alg)
            out.append(jwk)
        return {"keys": out}

    def public_jwks(self) -> dict[str, Any]:
        """The RFC 7517 JWK Set of every key, public members only."""
        return self._public

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(self._by_alg)

    def signer(self, alg: str | None = None) -> SigningKey:
        """The key that signs ``alg`` (default: the active algorithm)."""
        try:
            return self._by_alg[alg or self.active_alg]
        except KeyError:
            raise ValueError(f"no signing key for {alg!r}") from None

    def has(self, alg: str) -> bool:
        return alg in self._by_alg

    def __iter__(self) -> Iterator[SigningKey]:
        return iter(self._keys)

    def __repr__(self) -> str:
        return f"KeySet(active_alg={self.active_alg!r}, kids={[k.kid for k in self._keys]!r})"

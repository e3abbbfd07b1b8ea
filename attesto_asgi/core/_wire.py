"""msgspec Structs the core decodes into, kept in a module mypyc does not compile.

msgspec builds a Struct's decoder from its annotations at runtime. A class that mypyc
compiles keeps a union or a parametrised tuple only as ``type`` / ``tuple``, so the same
Struct defined in a compiled module decodes ``aud: str | list[str]`` as "expected type".
Every Struct the compiled modules (``pyproject.toml``, ``[tool.attesto.compile]``) decode
into lives here, or in ``model.py``, ``config.py`` and ``events.py``.
"""

from __future__ import annotations

import msgspec

__all__ = ["Assertion", "Sealed"]


class Assertion(msgspec.Struct):
    """The RFC 7523 §3 claims a client assertion is read for; types checked by msgspec."""

    iss: str
    sub: str
    aud: str | list[str]
    exp: int | float
    jti: str
    nbf: int | float | None = None
    iat: int | float | None = None


class Sealed(msgspec.Struct, frozen=True, array_like=True):
    """Sealed with a rotation: the successor and what the rotating request was granted,
    so a grace retry can be held to the same scope and audience."""

    token: str
    scope: tuple[str, ...]
    audience: tuple[str, ...]

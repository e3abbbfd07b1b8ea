"""The floor as a scenario target: client_credentials (clients in a dict) and
authorization_code with PKCE (codes and refresh tokens in dicts, by their SHA-256)."""

from __future__ import annotations

import secrets
import time

from .common import (
    ALL_SCOPES,
    CLIENT_ID,
    CLIENT_SECRET,
    CODE_CHALLENGE,
    CODE_SCOPE,
    CODE_TTL,
    REDIRECT_URI,
    SUBJECT,
    Built,
    Keys,
    cc_body,
    code_body,
)
from .floor import CodeGrant, Floor, FloorCode

__all__ = ["build"]


def build(grant: str, store_url: str, keys: Keys) -> Built:
    if grant == "client_credentials":

        async def mint_cc(n: int) -> list[bytes]:
            return [cc_body()]

        return Built(app=Floor({CLIENT_ID: (CLIENT_SECRET, ALL_SCOPES)}, keys), mint=mint_cc, reusable=True)
    assert grant == "authorization_code"
    app = FloorCode({CLIENT_ID: CLIENT_SECRET}, keys)

    async def mint_codes(n: int) -> list[bytes]:
        now = time.time()
        bound = CodeGrant(
            client_id=CLIENT_ID,
            redirect_uri=REDIRECT_URI,
            challenge=CODE_CHALLENGE,
            subject=SUBJECT,
            scope=CODE_SCOPE,
            auth_time=int(now),
            expires_at=now + CODE_TTL,
        )
        bodies = []
        for _ in range(n):
            code = secrets.token_urlsafe(32)
            app.add_code(code, bound)
            bodies.append(code_body(code))
        return bodies

    return Built(app=app, mint=mint_codes, reusable=False)

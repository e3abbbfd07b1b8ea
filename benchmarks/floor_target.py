"""The floor as a scenario target (client_credentials only, clients in a dict)."""

from __future__ import annotations

from .common import ALL_SCOPES, CLIENT_ID, CLIENT_SECRET, Built, Keys, cc_body
from .floor import Floor

__all__ = ["build"]


def build(grant: str, store_url: str, keys: Keys) -> Built:
    assert grant == "client_credentials"

    async def mint(n: int) -> list[bytes]:
        return [cc_body()]

    return Built(app=Floor({CLIENT_ID: (CLIENT_SECRET, ALL_SCOPES)}, keys), mint=mint, reusable=True)

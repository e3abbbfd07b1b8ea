"""Refresh-token format and record construction, shared by every grant that issues one.

A refresh token is ``<family_id>.<secret>``: the family id (not secret) lets every store
operation on a family's tokens touch one hash slot; only ``token_hash(token)`` is stored.
"""

from __future__ import annotations

import re
from typing import Final

from .._secrets import new_token, token_hash
from ..model import Client, RefreshRecord
from .context import Context

__all__ = ["family_expires_at", "new_refresh_token", "refresh_record", "split_refresh_token"]

_FORMAT: Final = re.compile(r"([A-Za-z0-9_-]{22})\.[A-Za-z0-9_-]{43}")


def new_refresh_token(family_id: str) -> tuple[str, str]:
    """A fresh refresh token of ``family_id`` and its storage hash."""
    token = f"{family_id}.{new_token()}"
    return token, token_hash(token)


def split_refresh_token(token: str) -> tuple[str, str] | None:
    """``(family_id, token_hash)`` of a well-formed token, else None."""
    m = _FORMAT.fullmatch(token)
    return (m.group(1), token_hash(token)) if m else None


def refresh_record(
    ctx: Context,
    client: Client,
    *,
    token_hash: str,
    family_id: str,
    family_expires_at: float,
    subject: str,
    scope: tuple[str, ...],
    resource: tuple[str, ...] = (),
    auth_time: int | None = None,
    acr: str | None = None,
    amr: tuple[str, ...] = (),
    sid: str | None = None,
    generation: int = 0,
) -> RefreshRecord:
    """A record whose expiry slides from now but never passes the family's end of life."""
    ttl = client.refresh_token_ttl or ctx.config.refresh_token_ttl
    return RefreshRecord(
        token_hash=token_hash,
        family_id=family_id,
        client_id=client.client_id,
        subject=subject,
        scope=scope,
        issued_at=ctx.now,
        expires_at=min(ctx.now + ttl, family_expires_at),
        family_expires_at=family_expires_at,
        generation=generation,
        resource=resource,
        auth_time=auth_time,
        acr=acr,
        amr=amr,
        sid=sid,
    )


def family_expires_at(ctx: Context, client: Client, started_at: float) -> float:
    """The family's absolute end of life, counted from the original authorization."""
    return started_at + (client.refresh_family_ttl or ctx.config.refresh_family_ttl)

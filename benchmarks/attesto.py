"""attesto-asgi wired for the benchmark: the middleware in front of a 404 app.

Used exactly as a host would: ``AttestoMiddleware(app, config=Config(...))`` with the
default hooks. Codes are minted through the host API (``issue_code``); refresh tokens are
put in the store the way the grants put them (benchmarks need thousands ready at once and
minting each through a full code exchange would take longer than the run).
"""

from __future__ import annotations

import asyncio
import logging
import time

from attesto_asgi import AttestoMiddleware, Client, Config, KeySet, issue_code
from attesto_asgi.core.issuer import GRANTS
from attesto_asgi.store import Store, installed_backends

from .common import (
    ALL_SCOPES,
    CLIENT_ID,
    CLIENT_SECRET,
    CODE_CHALLENGE,
    CODE_TTL,
    ISSUER,
    NONCE,
    REDIRECT_URI,
    REFRESH_SCOPE,
    SUBJECT,
    ASGIApp,
    Built,
    Keys,
    Receive,
    Scope,
    Send,
    cc_body,
    code_body,
    code_scope,
    refresh_body,
)
from .fill import fill_refresh

__all__ = ["available", "build", "make_config", "put_refresh_tokens"]

_MINT_AT_ONCE = 256  # codes minted concurrently

# The memory store says once that it is not durable; the benchmark knows.
logging.getLogger("attesto_asgi.memory").setLevel(logging.ERROR)


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def available(grant: str, store: str) -> str | None:
    """None when the scenario can run here, else why not."""
    base = grant.split("+")[0]
    if base not in GRANTS:
        return f"grant {base} not on this branch yet"
    if store not in installed_backends():
        return f"store backend {store} not installed"
    return None


def make_config(keys: Keys, store: str | Store) -> Config:
    client = Client(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_endpoint_auth_method="client_secret_basic",
        grant_types=("client_credentials", "authorization_code", "refresh_token"),
        redirect_uris=(REDIRECT_URI,),
        scope=ALL_SCOPES,
    )
    return Config(
        issuer=ISSUER,
        keys=KeySet.from_jwks({"keys": [keys.private_jwk()]}),
        store=store,
        clients=(client,),
        code_ttl=CODE_TTL,
    )


async def put_refresh_tokens(config: Config, n: int, *, batch: int = 1000) -> list[str]:
    """``n`` live refresh tokens of distinct families, stored as the grants store them."""
    from attesto_asgi._secrets import new_id
    from attesto_asgi.core.refresh import new_refresh_token
    from attesto_asgi.model import RefreshRecord

    now = time.time()
    store = config.backend
    scope = tuple(REFRESH_SCOPE.split())
    tokens: list[str] = []
    for start in range(0, n, batch):
        records = []
        for _ in range(min(batch, n - start)):
            family = new_id()
            token, token_hash = new_refresh_token(family)
            tokens.append(token)
            records.append(
                RefreshRecord(
                    token_hash=token_hash,
                    family_id=family,
                    client_id=CLIENT_ID,
                    subject=SUBJECT,
                    scope=scope,
                    issued_at=now,
                    expires_at=now + config.refresh_token_ttl,
                    family_expires_at=now + config.refresh_family_ttl,
                    auth_time=int(now),
                )
            )
        await fill_refresh(store, records)
    return tokens


def build(grant: str, store_url: str, keys: Keys) -> Built:
    config = make_config(keys, store_url)
    app: ASGIApp = AttestoMiddleware(not_found, config=config)
    base = grant.split("+")[0]

    async def mint(n: int) -> list[bytes]:
        if base == "client_credentials":
            return [cc_body()]
        if base == "refresh_token":
            return [refresh_body(t) for t in await put_refresh_tokens(config, n)]
        scope = tuple(code_scope(grant).split())

        async def one() -> bytes:
            code = await issue_code(
                config,
                client_id=CLIENT_ID,
                redirect_uri=REDIRECT_URI,
                subject=SUBJECT,
                scope=scope,
                code_challenge=CODE_CHALLENGE,
                code_challenge_method="S256",
                nonce=NONCE if "openid" in scope else None,
                auth_time=int(time.time()),
            )
            return code_body(code)

        # Concurrently, as many authorization requests would: a durable store then commits
        # (SQLite) or pipelines (Redis) them together instead of one write per code.
        out: list[bytes] = []
        for start in range(0, n, _MINT_AT_ONCE):
            out += await asyncio.gather(*(one() for _ in range(min(_MINT_AT_ONCE, n - start))))
        return out

    return Built(app=app, mint=mint, reusable=base == "client_credentials", closers=[config.backend.aclose])

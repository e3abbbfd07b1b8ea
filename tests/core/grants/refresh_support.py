"""Shared by the refresh_token grant tests: clients, seeding a family, the HTTP call, recording hooks.

The first refresh token of a family is issued by the authorization_code grant; these tests
seed it straight into the store (a real ``RefreshRecord`` under a real token's hash) and
then drive the refresh_token grant through real HTTP against the middleware.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import httpx

from attesto_asgi import AttestoMiddleware, Client, Config, Event, Hooks, MemoryStore
from attesto_asgi._secrets import new_id
from attesto_asgi.core.refresh import new_refresh_token, split_refresh_token
from attesto_asgi.model import RefreshRecord
from attesto_asgi.store import RotateResult
from tests.families import CREDENTIALS
from tests.helpers import http_client, not_found_app

APP_SECRET = "app-secret-0123456789abcdefghijklmnopqrstuvwxyz"
OTHER_SECRET = "other-secret-0123456789abcdefghijklmnopqrstuvwxyz"
SHORT_SECRET = "short-secret-0123456789abcdefghijklmnopqrstuvwxyz"
NOGRANT_SECRET = "nogrant-secret-0123456789abcdefghijklmnopqrstuvwxyz"

API = "https://api.example.com"
BILLING = "https://billing.example.com"
ALL_SCOPES = ("openid", "profile", "email", "offline_access", "read", "write")

REFRESH_CLIENTS = (
    Client(
        client_id="app",
        client_secret=APP_SECRET,
        grant_types=("authorization_code", "refresh_token"),
        redirect_uris=("https://app.example.com/cb",),
        scope=ALL_SCOPES,
        audiences=(API, BILLING),
    ),
    Client(
        client_id="other",
        client_secret=OTHER_SECRET,
        grant_types=("authorization_code", "refresh_token"),
        redirect_uris=("https://other.example.com/cb",),
        scope=ALL_SCOPES,
        audiences=(API, BILLING),
    ),
    # Per-client lifetimes: 60 s sliding refresh tokens inside a 300 s family.
    Client(
        client_id="short",
        client_secret=SHORT_SECRET,
        grant_types=("authorization_code", "refresh_token"),
        redirect_uris=("https://short.example.com/cb",),
        scope=ALL_SCOPES,
        refresh_token_ttl=60,
        refresh_family_ttl=300,
        access_token_ttl=30,
    ),
    Client(
        client_id="nogrant",
        client_secret=NOGRANT_SECRET,
        grant_types=("authorization_code",),
        redirect_uris=("https://nogrant.example.com/cb",),
        scope=ALL_SCOPES,
    ),
)

SECRETS = {"app": APP_SECRET, "other": OTHER_SECRET, "short": SHORT_SECRET, "nogrant": NOGRANT_SECRET, **CREDENTIALS}


class RecordingHooks(Hooks):
    """Host policy for the tests: keeps every emitted event; ``disabled`` subjects are inactive."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.disabled: set[str] = set()

    async def subject_active(self, subject: str) -> bool:
        return subject not in self.disabled

    async def on_event(self, event: Event) -> None:
        self.events.append(event)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


class YieldingMemoryStore(MemoryStore):
    """A ``MemoryStore`` that gives up the event loop before every refresh operation, the
    way a networked store does at each round trip. Each operation stays atomic; only the
    interleaving of concurrent requests changes, so races reach the compare-and-set.
    ``rotations`` keeps each compare-and-set's answer."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rotations: list[RotateResult] = []

    async def get_refresh(self, family_id: str, token_hash: str) -> RefreshRecord | None:
        await asyncio.sleep(0)
        return await super().get_refresh(family_id, token_hash)

    async def rotate_refresh(
        self, family_id: str, old_hash: str, successor: RefreshRecord, sealed: bytes | None
    ) -> RotateResult:
        await asyncio.sleep(0)
        result = await super().rotate_refresh(family_id, old_hash, successor, sealed)
        self.rotations.append(result)
        return result

    async def revoke_family(self, family_id: str, until: float) -> bool:
        await asyncio.sleep(0)
        return await super().revoke_family(family_id, until)

    async def family_revoked(self, family_id: str) -> bool:
        await asyncio.sleep(0)
        return await super().family_revoked(family_id)


async def seed_refresh(
    config: Config,
    *,
    client_id: str = "app",
    subject: str = "alice",
    scope: tuple[str, ...] = ("openid", "offline_access", "read"),
    resource: tuple[str, ...] = (),
    auth_time: int | None = None,
    acr: str | None = None,
    amr: tuple[str, ...] = (),
    sid: str | None = None,
) -> str:
    """Store the first refresh token of a new family, as the authorization_code grant would."""
    client = config.client(client_id)
    assert client is not None
    now = config.clock()
    family_id = new_id()
    token, hashed = new_refresh_token(family_id)
    family_end = now + (client.refresh_family_ttl or config.refresh_family_ttl)
    record = RefreshRecord(
        token_hash=hashed,
        family_id=family_id,
        client_id=client_id,
        subject=subject,
        scope=scope,
        issued_at=now,
        expires_at=min(now + (client.refresh_token_ttl or config.refresh_token_ttl), family_end),
        family_expires_at=family_end,
        resource=resource,
        auth_time=auth_time,
        acr=acr,
        amr=amr,
        sid=sid,
    )
    assert await config.backend.put_refresh(record)
    return token


def refresh_form(
    token: str | None, *, scope: str | None = None, resource: Iterable[str] = (), client_id: str | None = None
) -> list[tuple[str, str]]:
    form = [("grant_type", "refresh_token")]
    if token is not None:
        form.append(("refresh_token", token))
    if scope is not None:
        form.append(("scope", scope))
    form.extend(("resource", r) for r in resource)
    if client_id is not None:
        form.append(("client_id", client_id))
    return form


async def post_refresh(
    http: httpx.AsyncClient,
    token: str | None,
    *,
    client_id: str = "app",
    scope: str | None = None,
    resource: Iterable[str] = (),
) -> httpx.Response:
    """A refresh request as the client sends it: confidential clients by HTTP Basic,
    public clients (no entry in SECRETS) by their client_id in the body."""
    secret = SECRETS.get(client_id)
    if secret is None:
        form = refresh_form(token, scope=scope, resource=resource, client_id=client_id)
        return await http.post("/oauth/token", data=dict_or_pairs(form))
    form = refresh_form(token, scope=scope, resource=resource)
    return await http.post("/oauth/token", data=dict_or_pairs(form), auth=(client_id, secret))


def dict_or_pairs(form: list[tuple[str, str]]) -> Any:
    """httpx takes a dict with list values for repeated fields."""
    out: dict[str, Any] = {}
    for k, v in form:
        out.setdefault(k, []).append(v)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


async def record_of(config: Config, token: str) -> RefreshRecord | None:
    """The store's non-consuming view of a token (None: unknown, expired, or family revoked)."""
    parts = split_refresh_token(token)
    assert parts is not None
    return await config.backend.get_refresh(*parts)


def family_of(token: str) -> str:
    return token.split(".", 1)[0]


class Env:
    """One configured endpoint: its config, host hooks and an HTTP client to the middleware."""

    def __init__(self, config: Config, hooks: RecordingHooks, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.hooks = hooks
        self.http = http if http is not None else http_client(AttestoMiddleware(not_found_app, config))

    async def seed(self, **kwargs: Any) -> str:
        return await seed_refresh(self.config, **kwargs)

    async def refresh(self, token: str | None, **kwargs: Any) -> httpx.Response:
        return await post_refresh(self.http, token, **kwargs)

    async def aclose(self) -> None:
        await self.http.aclose()

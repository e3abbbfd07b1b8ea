"""Token families built straight through the core's minting functions, for the revocation,
introspection and token-exchange tests (independent of the code and refresh grants)."""

from __future__ import annotations

from typing import Any, NamedTuple

import httpx
import msgspec

from attesto_asgi import Client, Config, Event, Hooks, TokenRequest, issue_code
from attesto_asgi._secrets import new_id
from attesto_asgi.core.context import Context
from attesto_asgi.core.refresh import family_expires_at, new_refresh_token, refresh_record
from attesto_asgi.core.tokens import mint_access_token
from tests.core.grants.authcode_helpers import pkce_pair, redeem
from tests.helpers import SVC_SECRET

WEB_SECRET = "web-secret-0123456789abcdefghijklmnopqrstuvwxyz"
RS_SECRET = "rs-secret-0123456789abcdefghijklmnopqrstuvwxyz"
API = "https://api.example.com"
WEB_REDIRECT = "https://web.example.com/cb"


def family_clients() -> tuple[Client, ...]:
    """A confidential web client holding user families, and a resource server that may introspect."""
    return (
        Client(
            client_id="web",
            client_secret=WEB_SECRET,
            grant_types=("authorization_code", "refresh_token"),
            redirect_uris=(WEB_REDIRECT,),
            scope=("openid", "read", "write", "offline_access"),
            audiences=(API,),
            may_introspect=True,
        ),
        Client(
            client_id="rs",
            client_secret=RS_SECRET,
            grant_types=("client_credentials",),
            scope=("read",),
            may_introspect=True,
        ),
    )


CREDENTIALS = {"web": WEB_SECRET, "rs": RS_SECRET, "svc": SVC_SECRET}


class Family(NamedTuple):
    family_id: str
    access_token: str
    access_claims: dict[str, Any]
    refresh_token: str


def context(config: Config, client: Client, grant_type: str = "authorization_code") -> Context:
    return Context(config, TokenRequest(client=client, grant_type=grant_type), None)


async def start_family(
    config: Config,
    client_id: str = "web",
    *,
    subject: str = "alice",
    scope: tuple[str, ...] = ("read", "write"),
    audience: tuple[str, ...] = (API,),
) -> Family:
    """One authorization's family: an access token (carrying the family as fid) and a refresh token."""
    client = config.client(client_id)
    assert client is not None
    ctx = context(config, client)
    family_id = new_id()
    at = await mint_access_token(
        ctx, client=client, subject=subject, scope=scope, audience=audience, family_id=family_id
    )
    refresh, refresh_hash = new_refresh_token(family_id)
    record = refresh_record(
        ctx,
        client,
        token_hash=refresh_hash,
        family_id=family_id,
        family_expires_at=family_expires_at(ctx, client, ctx.now),
        subject=subject,
        scope=scope,
    )
    assert await config.backend.put_refresh(record)
    return Family(family_id, at.token, at.claims, refresh)


async def rotate(config: Config, family: Family, client_id: str = "web") -> Family:
    """Rotate the family's refresh token the way the refresh grant does (one store CAS), and
    mint the access token that comes with the successor."""
    client = config.client(client_id)
    assert client is not None
    ctx = context(config, client, "refresh_token")
    from attesto_asgi.core.refresh import split_refresh_token

    split = split_refresh_token(family.refresh_token)
    assert split is not None
    current = await config.backend.get_refresh(*split)
    assert current is not None
    successor, successor_hash = new_refresh_token(family.family_id)
    record = msgspec.structs.replace(
        current, token_hash=successor_hash, issued_at=ctx.now, generation=current.generation + 1
    )
    result = await config.backend.rotate_refresh(family.family_id, split[1], record, None)
    assert type(result).__name__ == "Rotated", result
    at = await mint_access_token(
        ctx,
        client=client,
        subject=current.subject,
        scope=current.scope,
        audience=(API,),
        family_id=family.family_id,
    )
    return Family(family.family_id, at.token, at.claims, successor)


class FamilyHooks(Hooks):
    """Default policy; records every event, and users in ``disabled`` are no longer active."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.disabled: set[str] = set()

    async def on_event(self, event: Event) -> None:
        self.events.append(event)

    async def subject_active(self, subject: str) -> bool:
        return subject not in self.disabled

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


async def code_grant(
    http: httpx.AsyncClient, config: Config, scope: str, **extra: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """A family started by the real authorization_code grant over HTTP for "web": the token
    response, and the form that redeemed the code (to present it again)."""
    verifier, challenge = pkce_pair()
    code = await issue_code(
        config,
        client_id="web",
        redirect_uri=WEB_REDIRECT,
        subject="alice",
        scope=scope,
        code_challenge=challenge,
        auth_time=int(config.clock()) - 30,
        **extra,
    )
    auth = ("web", WEB_SECRET)
    response = await redeem(http, code, verifier=verifier, redirect_uri=WEB_REDIRECT, auth=auth)
    assert response.status_code == 200, response.text
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_REDIRECT, "code_verifier": verifier}
    return response.json(), form

"""One worker process of the multi-process store test: its own event loop, its own store
connection (opened from a URL like a real deployment), the real middleware.

Protocol on stdio: prints ``ready`` once connected, waits for one line on stdin (the start
signal every worker gets at once), sends its requests, prints one JSON line per response,
then one with the names of the events it emitted.

    python -m tests.stores.mp_worker STORE_URL KEYS_FILE JSON_REQUESTS
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx

from attesto_asgi import AttestoMiddleware, Client, Config, Event, Hooks, KeySet
from tests.helpers import ISSUER, not_found_app

SPA_REDIRECT = "http://localhost:3000/cb"


def clients() -> tuple[Client, ...]:
    return (
        Client(
            client_id="spa",
            token_endpoint_auth_method="none",
            grant_types=("authorization_code", "refresh_token"),
            redirect_uris=(SPA_REDIRECT,),
            scope=("openid", "profile", "offline_access"),
        ),
    )


class Recording(Hooks):
    """Default policy; keeps the names of the events this process emitted."""

    def __init__(self) -> None:
        self.names: list[str] = []

    async def on_event(self, event: Event) -> None:
        self.names.append(event.name)


async def run(store_url: str, keys_file: str, requests: list[dict[str, str]]) -> None:
    hooks = Recording()
    config = Config(issuer=ISSUER, keys=KeySet.load(keys_file), store=store_url, clients=clients(), hooks=hooks)
    app = AttestoMiddleware(not_found_app, config)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            await config.backend.family_revoked("warm-up")  # connect (and migrate) before the race
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            responses = await asyncio.gather(*(http.post("/oauth/token", data=form) for form in requests))
            for r in responses:
                body: Any = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
                print(json.dumps({"status": r.status_code, "body": body}), flush=True)
            print(json.dumps({"events": hooks.names}), flush=True)
    finally:
        await config.backend.aclose()


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))

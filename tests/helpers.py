"""Test helpers shared by every test module: clock, clients, keys, the host app, an HTTP client."""

from __future__ import annotations

import os
import re
from typing import Any

import httpx
import msgspec
from joserfc.jwk import ECKey

from attesto_asgi import Client, Config, Hooks, KeySet
from attesto_asgi.store import AccessTokenStore

ISSUER = "http://localhost"
BASE_URL = "http://localhost"
TOKEN_URL = f"{BASE_URL}/oauth/token"

SVC_SECRET = "svc-secret-0123456789abcdefghijklmnopqrstuvwxyz"
POST_SECRET = "post-secret-0123456789abcdefghijklmnopqrstuvwxyz"
HS_SECRET = "hs-jwt-secret-0123456789abcdefghijklmnopqrstuvwxyz0123"

# RFC 6749 §5.2: an error_description holds only %x20-21 / %x23-5B / %x5D-7E.
ERROR_DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")

# One private key for the private_key_jwt client, made once per test session.
PKJWT_KEY = ECKey.generate_key("P-256")
PKJWT_PUBLIC = dict(PKJWT_KEY.as_dict(private=False), kid="pk-1", alg="ES256", use="sig")


# The compiled-build run (tests/test_compiled_build.py) repeats the property tests against the
# mypyc build with a share of their examples: the same code paths, in less CI time (the
# sources' run keeps every example).
EXAMPLES_DIVISOR = int(os.environ.get("ATTESTO_TEST_EXAMPLES_DIVISOR", "1"))


def examples(n: int) -> int:
    """``n`` property-test examples, or a share of them in the compiled-build run."""
    return max(1, n // EXAMPLES_DIVISOR)


class FakeClock:
    """Epoch seconds that only move when a test moves them."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def standard_clients() -> tuple[Client, ...]:
    return (
        Client(
            client_id="svc",
            client_secret=SVC_SECRET,
            grant_types=("client_credentials",),
            scope=("read", "write", "admin"),
            default_scope=("read",),
            audiences=("https://api.example.com", "https://billing.example.com"),
        ),
        Client(
            client_id="poster",
            client_secret=POST_SECRET,
            token_endpoint_auth_method="client_secret_post",
            grant_types=("client_credentials",),
            scope=("read",),
        ),
        Client(
            client_id="spa",
            token_endpoint_auth_method="none",
            grant_types=("authorization_code", "refresh_token"),
            redirect_uris=("http://localhost:3000/cb",),
            scope=("openid", "profile", "offline_access"),
        ),
        Client(
            client_id="pkjwt",
            token_endpoint_auth_method="private_key_jwt",
            jwks={"keys": [PKJWT_PUBLIC]},
            grant_types=("client_credentials",),
            scope=("read",),
        ),
        Client(
            client_id="hsjwt",
            client_secret=HS_SECRET,
            token_endpoint_auth_method="client_secret_jwt",
            grant_types=("client_credentials",),
            scope=("read",),
        ),
    )


_KEYS: dict[str, KeySet] = {}


def keyset(*algs: str) -> KeySet:
    """Key generation is slow for RSA: one KeySet per algorithm list per session."""
    name = ",".join(algs) or "ES256"
    if name not in _KEYS:
        _KEYS[name] = KeySet.generate(*algs)
    return _KEYS[name]


async def not_found_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The host app behind the middleware: answers everything with 404 text."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"host app"})


def http_client(app: Any, base_url: str = BASE_URL) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified (tests verify separately)."""
    import base64

    payload = token.split(".")[1]
    decoded: dict[str, Any] = msgspec.json.decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


async def access_token_revoked(store: AccessTokenStore, access_token: str) -> bool:
    """The store's answer for one of our access tokens, asked as the endpoints ask it: its
    ``jti`` and the family it carries (``fid``, None without one)."""
    claims = jwt_claims(access_token)
    return await store.access_token_revoked(claims["jti"], claims.get("fid"))


class Lifespan:
    """Drives an ASGI app's lifespan protocol by hand (startup on enter, shutdown on exit)."""

    def __init__(self, app: Any) -> None:
        import asyncio

        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lifespan:
        import asyncio

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        message = await self.outbox.get()
        assert message["type"] == "lifespan.startup.complete", message
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        message = await self.outbox.get()
        assert message["type"] == "lifespan.shutdown.complete", message
        assert self.task is not None
        await self.task


async def websocket_roundtrip(app: Any, path: str) -> list[dict[str, Any]]:
    """Open a websocket on ``app`` by hand and collect what it sends until it closes."""
    incoming = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "ws",
        "query_string": b"",
        "headers": [],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "subprotocols": [],
        "state": {},
    }
    await app(scope, receive, send)
    return sent


class LoadFails(Hooks):
    """Mixed into test hooks: ``load_client`` raises for the client ids in ``down`` (a host's
    client store failing for them), else loads as usual."""

    down: frozenset[str] = frozenset()

    async def load_client(self, config: Config, client_id: str) -> Client | None:
        if client_id in self.down:
            raise LookupError("client store down")
        return await super().load_client(config, client_id)


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RunningServer:
    """An ASGI app under a real uvicorn server on a free loopback port, in a thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        import uvicorn

        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)

    def __enter__(self) -> RunningServer:
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(250):
            if self.server.started:
                return self
            threading.Event().wait(0.02)
        raise AssertionError("uvicorn did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

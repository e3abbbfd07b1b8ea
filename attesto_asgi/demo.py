"""A demo token server on loopback: ``attesto-demo`` (or ``python -m attesto_asgi.demo``).

Serves the token endpoint, discovery and JWKS for one ``client_credentials`` client and
prints a ready-to-paste ``curl``. Development only: it binds loopback and refuses anything else.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
from pathlib import Path
from typing import Any

from .asgi.middleware import AttestoMiddleware
from .asgi.types import Receive, Scope, Send
from .config import Config, is_loopback_host
from .keys import KeySet
from .model import Client

__all__ = ["build_demo", "main"]

DEMO_CLIENT_ID = "demo-client"


async def welcome_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The host app behind the middleware: a one-line JSON answer for every other path."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b'{"hello":"this is the host app; the token endpoint is POST /oauth/token"}'
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def _load_or_create_keys(path: Path) -> KeySet:
    if path.exists():
        return KeySet.load(path)
    keys = KeySet.generate("ES256")
    path.write_text(json.dumps(keys.private_jwks()), "utf-8")
    path.chmod(0o600)
    return keys


def build_demo(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    store: str = "memory://",
    keys: KeySet | None = None,
    client_secret: str | None = None,
) -> tuple[Any, Config, str]:
    """The demo ASGI app, its Config and the demo client's secret."""
    secret = client_secret or secrets.token_urlsafe(32)
    config = Config(
        issuer=f"http://{host}:{port}",
        keys=keys or KeySet.generate("ES256"),
        store=store,
        clients=(
            Client(
                client_id=DEMO_CLIENT_ID,
                client_secret=secret,
                grant_types=("client_credentials",),
                scope=("read", "write"),
                audiences=(f"http://{host}:{port}/api",),
            ),
        ),
    )
    return AttestoMiddleware(welcome_app, config), config, secret


def curl_command(config: Config, secret: str) -> str:
    return (
        f"curl -s -u {shlex.quote(DEMO_CLIENT_ID + ':' + secret)} "
        f"-d grant_type=client_credentials -d scope=read {config.token_endpoint}"
    )


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="attesto-asgi demo token server (loopback only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--store",
        default="sqlite:///attesto-demo.db",
        help="store URL (default: a durable SQLite file; memory://, redis://127.0.0.1:6379/0, ...)",
    )
    parser.add_argument("--keys", default="attesto-demo-keys.json", help="private JWKS file (created if missing)")
    args = parser.parse_args(argv)
    if not is_loopback_host(args.host):
        parser.error("the demo binds loopback only")
    app, config, secret = build_demo(
        host=args.host, port=args.port, store=args.store, keys=_load_or_create_keys(Path(args.keys))
    )
    print(f"attesto-asgi demo: issuer {config.issuer}, store {args.store}")
    print(f"discovery: {config.endpoint('/.well-known/openid-configuration')}")
    print("get a token:")
    print(f"  {curl_command(config, secret)}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

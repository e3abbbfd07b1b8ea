"""``python -m examples.litestar_app``: a Litestar service with its own token endpoint.

``LITESTAR_PORT`` (8003), ``LITESTAR_CLIENT_SECRET`` (the secret of the client
``inventory-sync``; generated and printed when unset).
"""

from __future__ import annotations

import os
import secrets

import uvicorn

from attesto_asgi import Client

from .app import create_app


def main() -> None:
    port = int(os.environ.get("LITESTAR_PORT", "8003"))
    secret = os.environ.get("LITESTAR_CLIENT_SECRET") or secrets.token_urlsafe(32)
    issuer = f"http://127.0.0.1:{port}"
    client = Client(
        client_id="inventory-sync",
        client_secret=secret,
        grant_types=("client_credentials",),
        scope=("inventory:read",),
    )
    print(f"litestar service: {issuer}", flush=True)
    print(
        f"get a token:  curl -s -u inventory-sync:{secret} -d grant_type=client_credentials {issuer}/oauth/token",
        flush=True,
    )
    uvicorn.run(
        create_app(issuer=issuer, clients=(client,)), host="127.0.0.1", port=port, log_level="warning", ws="none"
    )


if __name__ == "__main__":
    main()

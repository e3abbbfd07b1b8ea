"""``python -m examples.relying_party``: serve the example relying party on 127.0.0.1.

``RP_PORT`` (8001), ``DEMO_PROVIDER_URL`` (http://127.0.0.1:8000), ``DEMO_RP_SECRET``
(the secret the provider registered for the client ``demo-rp``).
"""

from __future__ import annotations

import os
import sys

import uvicorn

from .app import RPSettings, create_app


def main() -> None:
    port = int(os.environ.get("RP_PORT", "8001"))
    secret = os.environ.get("DEMO_RP_SECRET")
    if not secret:
        sys.exit("DEMO_RP_SECRET must be the secret the provider registered for demo-rp")
    settings = RPSettings(
        base_url=f"http://127.0.0.1:{port}",
        issuer=os.environ.get("DEMO_PROVIDER_URL", "http://127.0.0.1:8000"),
        client_id="demo-rp",
        client_secret=secret,
    )
    print(f"relying party: {settings.base_url}", flush=True)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning", ws="none")


if __name__ == "__main__":
    main()

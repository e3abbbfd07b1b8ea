"""``python -m examples.fastapi_api``: serve the reports API on 127.0.0.1.

``API_PORT`` (8002; the API's identifier is ``http://127.0.0.1:<port>``),
``DEMO_PROVIDER_URL`` (http://127.0.0.1:8000). The provider must be running: the API
fetches its JWKS at start-up.
"""

from __future__ import annotations

import os

import uvicorn

from .app import create_app


def main() -> None:
    port = int(os.environ.get("API_PORT", "8002"))
    issuer = os.environ.get("DEMO_PROVIDER_URL", "http://127.0.0.1:8000")
    app = create_app(issuer=issuer, audience=f"http://127.0.0.1:{port}")
    print(f"reports API: http://127.0.0.1:{port}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws="none")


if __name__ == "__main__":
    main()

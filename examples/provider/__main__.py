"""``python -m examples.provider``: serve the example provider on 127.0.0.1 (see settings.py)."""

from __future__ import annotations

import os

import uvicorn

from .app import create_app
from .settings import ProviderSettings


def main() -> None:
    settings = ProviderSettings.from_env()
    port = int(os.environ.get("PROVIDER_PORT", "8000"))
    print(f"provider: {settings.issuer} (store: {settings.store})", flush=True)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning", ws="none")


if __name__ == "__main__":
    main()

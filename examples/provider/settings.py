"""The provider's settings: the clients it knows, where it keeps state, its secrets.

``ProviderSettings.from_env()`` is what ``python -m examples.provider`` uses; tests build
``ProviderSettings`` directly. Everything binds to loopback only.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from attesto_asgi import Client, KeySet, Store

__all__ = ["HERE", "ProviderSettings", "RegisteredClient", "load_or_create_keys"]

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, kw_only=True)
class RegisteredClient:
    """A client as the provider's pages need it: the token endpoint's ``Client`` plus what
    the user sees on the consent page and where RP-initiated logout may return to."""

    client: Client
    name: str
    post_logout_redirect_uris: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ProviderSettings:
    issuer: str
    store: str | Store
    clients: tuple[RegisteredClient, ...]
    keys: KeySet = field(default_factory=KeySet.generate)
    users_file: Path = HERE / "users.json"
    # Signs the session cookie (itsdangerous); random per start unless given.
    session_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    # Seals refresh-token successors for the rotation grace window: the same on every worker.
    secret_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    refresh_grace: int = 0

    @classmethod
    def from_env(cls) -> ProviderSettings:
        """``PROVIDER_PORT`` (8000), ``ATTESTO_STORE`` (default: SQLite in the data dir; a
        ``redis://127.0.0.1:6379/0`` URL switches to Redis), ``DEMO_DATA_DIR``
        (``.attesto-demo``), ``DEMO_RP_URL`` / ``DEMO_RP_SECRET`` (the relying party),
        ``DEMO_API_URL`` / ``DEMO_API_CLIENT_SECRET`` (the FastAPI resource server and a
        client_credentials client for it), ``PROVIDER_SESSION_SECRET``."""
        port = int(os.environ.get("PROVIDER_PORT", "8000"))
        data_dir = Path(os.environ.get("DEMO_DATA_DIR", ".attesto-demo")).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        store = os.environ.get("ATTESTO_STORE") or f"sqlite:///{data_dir / 'provider.db'}"
        rp_url = os.environ.get("DEMO_RP_URL", "http://127.0.0.1:8001").rstrip("/")
        api_url = os.environ.get("DEMO_API_URL", "http://127.0.0.1:8002").rstrip("/")
        rp_secret = os.environ.get("DEMO_RP_SECRET") or _made_up("DEMO_RP_SECRET")
        api_secret = os.environ.get("DEMO_API_CLIENT_SECRET") or _made_up("DEMO_API_CLIENT_SECRET")
        return cls(
            issuer=f"http://127.0.0.1:{port}",
            store=store,
            keys=load_or_create_keys(data_dir / "provider-keys.json"),
            clients=demo_clients(rp_url=rp_url, rp_secret=rp_secret, api_url=api_url, api_secret=api_secret),
            session_secret=os.environ.get("PROVIDER_SESSION_SECRET") or secrets.token_urlsafe(32),
        )


def _made_up(name: str) -> str:
    value = secrets.token_urlsafe(32)
    print(f"{name} not set; generated one for this run: {value}", flush=True)
    return value


def demo_clients(*, rp_url: str, rp_secret: str, api_url: str, api_secret: str) -> tuple[RegisteredClient, ...]:
    """The example relying party (a confidential web client) and a service client that
    gets tokens for the FastAPI resource server."""
    return (
        RegisteredClient(
            client=Client(
                client_id="demo-rp",
                client_secret=rp_secret,
                token_endpoint_auth_method="client_secret_basic",
                grant_types=("authorization_code", "refresh_token"),
                redirect_uris=(f"{rp_url}/callback",),
                scope=("openid", "profile", "email", "offline_access", "reports:read"),
                audiences=(api_url,),
            ),
            name="Example Relying Party",
            post_logout_redirect_uris=(f"{rp_url}/logged-out",),
        ),
        RegisteredClient(
            client=Client(
                client_id="reports-cli",
                client_secret=api_secret,
                grant_types=("client_credentials",),
                scope=("reports:read",),
                audiences=(api_url,),
            ),
            name="Reports command-line tool",
        ),
    )


def load_or_create_keys(path: Path) -> KeySet:
    """Private signing keys kept across restarts (so issued tokens stay verifiable)."""
    if path.exists():
        return KeySet.load(path)
    keys = KeySet.generate("ES256")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(keys.private_jwks(), f)
    return keys

"""``Config``: everything the endpoint needs, validated and prepared once at start-up."""

from __future__ import annotations

import ipaddress
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
from msgspec.structs import force_setattr

from .core.policy import Policy
from .hooks import Hooks
from .keys import KeySet
from .model import Client
from .store import Store, open_store

__all__ = ["MAX_REFRESH_GRACE", "Config", "is_loopback_host"]

log = logging.getLogger("attesto_asgi.config")

MAX_REFRESH_GRACE: Final = 300  # seconds; LESSONS: the grace window is capped (Hydra: 5 min)


def is_loopback_host(host: str) -> bool:
    """A loopback IP literal (127.0.0.0/8, ::1, bracketed or not) or ``localhost`` and its
    subdomains (RFC 6761 §6.3). A DNS name that merely starts with ``127.`` is not."""
    host = host.lower()
    try:
        return ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """The endpoint's configuration. ``store`` may be a URL (opened by entry point) or a Store.

    TTLs are seconds. ``refresh_grace`` is the rotation grace window (0 = strict, at most
    300). ``secret_key`` seals grace-window successors (AEAD); give the same 32-byte key to
    every worker, or a grace retry that lands on another worker is treated as reuse.
    """

    issuer: str
    keys: KeySet
    store: Store | str = "memory://"
    clients: tuple[Client, ...] = ()
    hooks: Hooks = msgspec.field(default_factory=Hooks)
    access_token_ttl: int = 900
    id_token_ttl: int = 3600
    refresh_token_ttl: int = 14 * 86400
    refresh_family_ttl: int = 30 * 86400
    code_ttl: int = 60
    client_assertion_ttl: int = 300
    refresh_grace: int = 0
    id_token_on_refresh: bool = False
    # Audience of an access token when the request names no resource; None: the client id.
    default_audience: str | None = None
    # Published in the discovery document when the host serves them (DESIGN §8).
    authorization_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    extra_metadata: dict[str, Any] = {}
    token_path: str = "/oauth/token"
    revocation_path: str = "/oauth/revoke"
    introspection_path: str = "/oauth/introspect"
    jwks_path: str = "/.well-known/jwks.json"
    # HTTPS is required except for loopback hosts; False turns the check off (development).
    require_https: bool = True
    max_body_bytes: int = 64 * 1024
    # Empty: a random key for this process (fine for one worker; warned about with a grace window).
    secret_key: bytes = b""
    clock: Callable[[], float] = time.time
    # Prepared once from the fields above.
    _clients: dict[str, Client] = {}
    # ``hooks`` as the core asks them (core/policy.py).
    _policy: Policy = msgspec.field(default_factory=lambda: Policy(Hooks(), {}))

    def __post_init__(self) -> None:
        parts = urlsplit(self.issuer)
        # OIDC Discovery §3 / RFC 8414 §2: https URL, no query or fragment.
        if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_host(parts.hostname or "")):
            raise ValueError("issuer must be an https URL (http only for loopback hosts)")
        if parts.query or parts.fragment:
            raise ValueError("issuer must not have a query or fragment")
        if not 0 <= self.refresh_grace <= MAX_REFRESH_GRACE:
            raise ValueError(f"refresh_grace must be between 0 and {MAX_REFRESH_GRACE} seconds")
        for name in ("access_token_ttl", "id_token_ttl", "refresh_token_ttl", "refresh_family_ttl", "code_ttl"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not self.secret_key:
            if self.refresh_grace > 0:
                log.warning(
                    "refresh_grace is on but Config.secret_key is not set: this process seals "
                    "successors with its own random key, so a grace retry served by another worker "
                    "is treated as reuse. Give every worker the same 32-byte secret_key."
                )
            force_setattr(self, "secret_key", secrets.token_bytes(32))
        elif len(self.secret_key) < 32:
            raise ValueError("secret_key must be at least 32 bytes")
        if isinstance(self.store, str):
            force_setattr(self, "store", open_store(self.store))
        index: dict[str, Client] = {}
        for c in self.clients:
            if c.client_id in index:
                raise ValueError(f"client {c.client_id!r} registered twice")
            index[c.client_id] = c
        force_setattr(self, "_clients", index)
        force_setattr(self, "_policy", Policy(self.hooks, index))

    @property
    def backend(self) -> Store:
        """The opened store."""
        assert not isinstance(self.store, str)
        return self.store

    def client(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    @property
    def token_endpoint(self) -> str:
        return self.endpoint(self.token_path)

    def endpoint(self, path: str) -> str:
        """The absolute URL of an ASGI path on the issuer's origin."""
        parts = urlsplit(self.issuer)
        return f"{parts.scheme}://{parts.netloc}{path}"

    def __repr__(self) -> str:  # never the secret key
        return f"Config(issuer={self.issuer!r}, keys={self.keys!r}, store={self.store!r})"

"""Helpers for the examples' tests: real uvicorn servers on free loopback ports, the provider
and relying party wired to each other, and an HTML form reader for flows driven with httpx."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html.parser
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import uvicorn

from attesto_asgi import Client, KeySet
from examples.provider import ProviderSettings, RegisteredClient
from examples.relying_party import RPSettings

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "examples"
ALICE = ("alice", "alice-demo-password")
ALICE_SUB = "248289761001"

# One signing key for every provider the tests start (ES256 generation is cheap, but the
# tokens of one test run then verify against one JWKS, as for a real provider).
KEYS = KeySet.generate("ES256")


def bind_loopback() -> socket.socket:
    """A listening-ready socket on a free 127.0.0.1 port, bound before any app is built so
    that apps that need each other's URL can be wired first."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def serve(app: Any, sock: socket.socket) -> Iterator[str]:
    """Run ``app`` under uvicorn (lifespan on) in a thread on ``sock``; stop it after."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def provider_store(tmp_path: Path) -> str:
    """The provider's default store is SQLite in a file; EXAMPLES_TEST_STORE may name another
    (e.g. ``redis://127.0.0.1:6379/15``) to run the same tests on it."""
    return os.environ.get("EXAMPLES_TEST_STORE") or f"sqlite:///{tmp_path / 'provider.db'}"


@dataclass
class Deployment:
    """Provider, relying party and reports API wired to each other, not yet served."""

    provider_sock: socket.socket
    rp_sock: socket.socket
    api_sock: socket.socket
    provider_url: str
    rp_url: str
    api_url: str
    rp_secret: str
    api_secret: str
    provider_settings: ProviderSettings
    rp_settings: RPSettings


def public_client(client_id: str, redirect_uri: str, **extra: Any) -> RegisteredClient:
    options: dict[str, Any] = {
        "client_id": client_id,
        "token_endpoint_auth_method": "none",
        "grant_types": ("authorization_code", "refresh_token"),
        "redirect_uris": (redirect_uri,),
        "scope": ("openid", "profile", "email", "offline_access"),
    }
    options.update(extra)
    return RegisteredClient(client=Client(**options), name=f"Test client {client_id}")


class FormReader(html.parser.HTMLParser):
    """The forms of an HTML page: action, method and the inputs' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get"), "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")


def form_fields(page: str, action: str) -> dict[str, str]:
    reader = FormReader()
    reader.feed(page)
    for form in reader.forms:
        if form["action"] == action:
            fields: dict[str, str] = form["fields"]
            return fields
    raise AssertionError(f"no form posting to {action!r} on the page")


def pkce() -> tuple[str, str]:
    """A code verifier and its S256 challenge (RFC 7636 §4.1-§4.2)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def provider_sign_in(http: httpx.Client, provider_url: str, params: dict[str, str]) -> dict[str, str]:
    """Authorize -> log in as Alice -> allow, over real HTTP without following the final
    redirect; returns the query of the redirect back to the client."""
    r = http.get(f"{provider_url}/authorize", params=params)
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    if location.startswith("/login"):
        page = http.get(provider_url + location)
        fields = form_fields(page.text, "/login") | {"username": ALICE[0], "password": ALICE[1]}
        location = http.post(f"{provider_url}/login", data=fields).headers["location"]
    if location.startswith("/consent"):
        page = http.get(provider_url + location)
        fields = form_fields(page.text, "/consent") | {"decision": "allow"}
        location = http.post(f"{provider_url}/consent", data=fields).headers["location"]
    assert location.startswith(params["redirect_uri"]), location
    return query_of(location)

"""Fixtures for the examples' tests (helpers live in support.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.provider import ProviderSettings
from examples.provider.settings import demo_clients
from examples.relying_party import RPSettings
from tests.examples.support import KEYS, Deployment, bind_loopback, provider_store, url_of


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    provider_sock, rp_sock, api_sock = bind_loopback(), bind_loopback(), bind_loopback()
    provider_url, rp_url, api_url = url_of(provider_sock), url_of(rp_sock), url_of(api_sock)
    rp_secret, api_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    clients = demo_clients(rp_url=rp_url, rp_secret=rp_secret, api_url=api_url, api_secret=api_secret)
    provider_settings = ProviderSettings(
        issuer=provider_url, store=provider_store(tmp_path), clients=clients, keys=KEYS
    )
    rp_settings = RPSettings(base_url=rp_url, issuer=provider_url, client_id="demo-rp", client_secret=rp_secret)
    try:
        yield Deployment(
            provider_sock=provider_sock,
            rp_sock=rp_sock,
            api_sock=api_sock,
            provider_url=provider_url,
            rp_url=rp_url,
            api_url=api_url,
            rp_secret=rp_secret,
            api_secret=api_secret,
            provider_settings=provider_settings,
            rp_settings=rp_settings,
        )
    finally:
        for sock in (provider_sock, rp_sock, api_sock):
            sock.close()

"""The middleware in front of a Litestar app, served by uvicorn: the token endpoint and
discovery come from attesto-asgi, everything else (and the lifespan) from Litestar, and a
Litestar route accepts the tokens the middleware issued."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from attesto_asgi import Client, KeySet
from examples.litestar_app import create_app
from tests.examples.support import bind_loopback, provider_store, serve, url_of

SECRET = secrets.token_urlsafe(32)
OTHER_SECRET = secrets.token_urlsafe(32)


def clients() -> tuple[Client, ...]:
    return (
        Client(
            client_id="inventory-sync",
            client_secret=SECRET,
            grant_types=("client_credentials",),
            scope=("inventory:read",),
        ),
        Client(
            client_id="billing",
            client_secret=OTHER_SECRET,
            grant_types=("client_credentials",),
            scope=("billing:read",),
        ),
    )


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    sock = bind_loopback()
    app = create_app(issuer=url_of(sock), clients=clients(), store=provider_store(tmp_path))
    with serve(app, sock) as url:
        yield url


def token(url: str, client_id: str, secret: str) -> str:
    r = httpx.post(f"{url}/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    value: str = r.json()["access_token"]
    return value


def test_litestar_routes_and_the_token_endpoint_share_one_server(service: str) -> None:
    home = httpx.get(f"{service}/")
    assert home.status_code == 200
    assert home.json() == {"service": "litestar example", "token_endpoint": f"{service}/oauth/token"}
    assert httpx.get(f"{service}/nowhere").status_code == 404  # Litestar's own 404
    doc = httpx.get(f"{service}/.well-known/openid-configuration").json()
    assert doc["issuer"] == service
    assert doc["token_endpoint"] == f"{service}/oauth/token"
    assert httpx.get(doc["jwks_uri"]).json()["keys"]
    wrong_method = httpx.get(f"{service}/oauth/token")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"


def test_a_litestar_route_accepts_the_issued_token(service: str) -> None:
    r = httpx.get(
        f"{service}/inventory", headers={"authorization": f"Bearer {token(service, 'inventory-sync', SECRET)}"}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"client_id": "inventory-sync", "items": ["bolts", "nuts", "washers"]}


def test_litestar_route_errors_follow_rfc_6750(service: str) -> None:
    r = httpx.get(f"{service}/inventory")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="litestar"'
    r = httpx.get(f"{service}/inventory", headers={"authorization": "Bearer nope"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    r = httpx.get(
        f"{service}/inventory", headers={"authorization": f"Bearer {token(service, 'billing', OTHER_SECRET)}"}
    )
    assert r.status_code == 403
    assert 'error="insufficient_scope", scope="inventory:read"' in r.headers["www-authenticate"]
    bad = httpx.post(f"{service}/oauth/token", data={"grant_type": "client_credentials"}, auth=("billing", "wrong"))
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_client"


def test_a_token_from_another_service_is_refused(service: str, tmp_path: Path) -> None:
    # Same issuer URL and client, other keys: the signature does not verify here.
    sock = bind_loopback()
    other = create_app(issuer=service, clients=clients(), keys=KeySet.generate("ES256"), store="memory://")
    with serve(other, sock) as other_url:
        foreign = token(other_url, "inventory-sync", SECRET)
    r = httpx.get(f"{service}/inventory", headers={"authorization": f"Bearer {foreign}"})
    assert r.status_code == 401

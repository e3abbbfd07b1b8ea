"""End to end: the demo app under a real uvicorn server on a free loopback port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet

from attesto_asgi.demo import DEMO_CLIENT_ID, build_demo, curl_command
from tests.helpers import free_port


@pytest.fixture
def demo_server() -> Iterator[tuple[str, str]]:
    port = free_port()
    app, config, secret = build_demo(host="127.0.0.1", port=port)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield config.issuer, secret
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def test_token_over_real_http_verifies_with_discovered_jwks(demo_server: tuple[str, str]) -> None:
    issuer, secret = demo_server
    async with httpx.AsyncClient(base_url=issuer) as http:
        r = await http.post(
            "/oauth/token", data={"grant_type": "client_credentials", "scope": "read"}, auth=(DEMO_CLIENT_ID, secret)
        )
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        token = r.json()["access_token"]
        discovery = (await http.get("/.well-known/openid-configuration")).json()
        assert discovery["issuer"] == issuer
        jwks = JoseKeySet.import_key_set((await http.get(discovery["jwks_uri"])).json())
        home = await http.get("/")
    claims = jwt.decode(token, jwks, algorithms=discovery["id_token_signing_alg_values_supported"]).claims
    assert claims["iss"] == issuer
    assert claims["sub"] == claims["client_id"] == DEMO_CLIENT_ID
    assert claims["scope"] == "read"
    assert home.status_code == 200  # the host app still answers its own paths


async def test_printed_curl_command_works(demo_server: tuple[str, str]) -> None:
    import shutil

    issuer, secret = demo_server
    from attesto_asgi import Config, KeySet

    command = curl_command(Config(issuer=issuer, keys=KeySet.generate()), secret)
    assert shutil.which("curl"), "curl is needed to check the README's promise"
    proc = await asyncio.create_subprocess_shell(command, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert b'"token_type":"Bearer"' in out

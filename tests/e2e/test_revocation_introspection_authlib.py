"""End to end: authlib's OAuth 2.0 client revokes (RFC 7009) and introspects (RFC 7662)
against the middleware under a real uvicorn server on a free loopback port."""

from __future__ import annotations

import time

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT

from attesto_asgi import AttestoMiddleware, Client, Config, MemoryStore
from tests.families import RS_SECRET, WEB_SECRET, family_clients, start_family
from tests.helpers import PKJWT_KEY, PKJWT_PUBLIC, RunningServer, free_port, keyset, not_found_app, standard_clients


async def test_authlib_revokes_and_introspects_over_real_http() -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    pk_web = Client(
        client_id="pk-web",
        token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": [PKJWT_PUBLIC]},
        grant_types=("authorization_code", "refresh_token"),
        scope=("read",),
        may_introspect=True,
    )
    config = Config(
        issuer=issuer,
        keys=keyset("ES256"),
        store=MemoryStore(warn=False),
        clients=(*standard_clients(), *family_clients(), pk_web),
    )
    # Seeded before the server starts: from then on the store is touched only over HTTP.
    web_family = await start_family(config)
    pk_family = await start_family(config, "pk-web", scope=("read",))
    discovery_url = f"{issuer}/.well-known/openid-configuration"

    with RunningServer(AttestoMiddleware(not_found_app, config), port):
        async with httpx.AsyncClient() as plain:
            meta = (await plain.get(discovery_url)).json()
        async with AsyncOAuth2Client(client_id="rs", client_secret=RS_SECRET) as rs:
            revoke_url, introspect_url = meta["revocation_endpoint"], meta["introspection_endpoint"]
            seen = (await rs.introspect_token(introspect_url, token=web_family.access_token)).json()
            assert seen["active"] is True
            assert (seen["sub"], seen["client_id"], seen["scope"]) == ("alice", "web", "read write")

        async with AsyncOAuth2Client(client_id="web", client_secret=WEB_SECRET) as web:
            own = await web.introspect_token(introspect_url, token=web_family.refresh_token)
            assert own.json()["active"] is True
            r = await web.revoke_token(revoke_url, token=web_family.refresh_token, token_type_hint="refresh_token")
            assert r.status_code == 200
            assert r.headers["cache-control"] == "no-store"
            after = await web.introspect_token(introspect_url, token=web_family.refresh_token)
            assert after.json() == {"active": False}
            # Unknown tokens are answered like any other (RFC 7009 §2.2).
            assert (await web.revoke_token(revoke_url, token="never-issued")).status_code == 200

        async with AsyncOAuth2Client(client_id="rs", client_secret=RS_SECRET) as rs:
            gone = await rs.introspect_token(introspect_url, token=web_family.access_token)
            assert gone.json() == {"active": False}
            # rs's own client_credentials token, through the token endpoint, then revoked by rs.
            token = await rs.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
            at = token["access_token"]
            live = await rs.introspect_token(introspect_url, token=at, token_type_hint="access_token")
            assert live.json()["active"] is True
            assert (await rs.revoke_token(revoke_url, token=token["access_token"])).status_code == 200
            dead = await rs.introspect_token(introspect_url, token=token["access_token"])
            assert dead.json() == {"active": False}

        # private_key_jwt: authlib sets the assertion's aud to the URL it calls (RFC 7523 §3).
        # authlib writes its generated jti into the claims dict it was given, so one auth
        # object would resend the same jti, which the replay cache rightly refuses: one per call.
        def assertion() -> PrivateKeyJWT:
            return PrivateKeyJWT(headers={"kid": "pk-1"}, alg="ES256", claims={"exp": int(time.time()) + 120})

        async with AsyncOAuth2Client(client_id="pk-web", client_secret=PKJWT_KEY) as pk:
            rt = pk_family.refresh_token
            live = await pk.introspect_token(introspect_url, token=rt, auth=pk.client_auth(assertion()))
            assert live.json()["active"] is True, live.text
            r = await pk.revoke_token(revoke_url, token=rt, auth=pk.client_auth(assertion()))
            assert r.status_code == 200, r.text
            dead = await pk.introspect_token(introspect_url, token=rt, auth=pk.client_auth(assertion()))
            assert dead.json() == {"active": False}
            replayed = pk.client_auth(assertion())
            assert (await pk.introspect_token(introspect_url, token="x", auth=replayed)).status_code == 200
            again = await pk.introspect_token(introspect_url, token="x", auth=replayed)
            assert again.json()["error"] == "invalid_client"

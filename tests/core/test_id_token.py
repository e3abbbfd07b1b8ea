"""OIDC ID tokens from the authorization_code grant (OIDC Core §2, §3.1.3.6, §3.1.3.7, §5.5).

``at_hash`` / ``c_hash`` are checked against known answers: the OIDC Core examples, values
computed with the openssl command line, and per algorithm through HTTP against hashlib and
authlib's own implementation.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.jwk import KeySet as JoseKeySet
from joserfc.jws import JWSRegistry

from attesto_asgi import AttestoMiddleware, Client, Config, Hooks
from attesto_asgi.core.id_token import half_hash
from tests.core.grants.authcode_helpers import SPA_REDIRECT, auth_time, authcode_clients, redeem, spa_code
from tests.helpers import FakeClock, http_client, jwt_claims, keyset, not_found_app

# OIDC Core 1.0 Appendix A examples (RS256): an access token with its at_hash, a code with its c_hash.
SPEC_ACCESS_TOKEN = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
SPEC_CODE = "Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk"
# Left half of SHA-256 / SHA-384 / SHA-512, base64url, computed with
# `printf %s VALUE | openssl dgst -shaN -binary | head -c N/16 | base64 | tr '+/' '-_' | tr -d =`.
KNOWN_ANSWERS = {
    "sha256": ("77QmUPtjPfzWtF2AnpK9RQ", "LDktKdoQak3Pk0cnXxCltA"),  # the spec's own values
    "sha384": ("jtAeDp945y1dDqU3nkIVGNZP1HjH_MFs", "Mq-knyaEMtWGfnBi2POEZb1kiLx10_DF"),
    "sha512": ("q7nS86GgvvFaZkzALLWqJYaJIKw2wCDAVfCAsm5CrBM", "E9z1C-c0Az4eTEzE0Nm3OQ3BS2BhMgxuP7x5JAQj1_4"),
}
# OIDC Core §3.1.3.6: the hash of the JWS alg's hash; Ed25519 (EdDSA) uses SHA-512.
HASH_OF_ALG = {
    "ES256": "sha256",
    "RS256": "sha256",
    "PS256": "sha256",
    "ES384": "sha384",
    "RS384": "sha384",
    "PS384": "sha384",
    "ES512": "sha512",
    "RS512": "sha512",
    "PS512": "sha512",
    "EdDSA": "sha512",
}


def by_hand(value: str, hash_name: str) -> str:
    digest = hashlib.new(hash_name, value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", sorted(HASH_OF_ALG))
def test_half_hash_known_answers(alg: str) -> None:
    at_hash, c_hash = KNOWN_ANSWERS[HASH_OF_ALG[alg]]
    assert half_hash(SPEC_ACCESS_TOKEN, alg) == at_hash
    assert half_hash(SPEC_CODE, alg) == c_hash


def verify(token: str, config: Config, alg: str) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = JoseKeySet.import_key_set(config.keys.public_jwks())
    decoded = jwt.decode(token, keys, registry=JWSRegistry(algorithms=[alg]))
    return dict(decoded.header), dict(decoded.claims)


async def flow(config: Config, clock: FakeClock, *, client_id: str = "spa", **extra: Any) -> tuple[str, dict[str, Any]]:
    code = await spa_code(config, clock, client_id=client_id, **extra)
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        r = await redeem(http, code, client_id=client_id)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return code, body


@pytest.mark.parametrize("alg", sorted(HASH_OF_ALG))
async def test_at_hash_and_c_hash_per_algorithm(make_config: Callable[..., Config], clock: FakeClock, alg: str) -> None:
    config = make_config(keys=keyset(alg), clients=authcode_clients())
    code, body = await flow(config, clock)
    header, claims = verify(body["id_token"], config, alg)
    assert header["alg"] == alg
    assert header["kid"] == config.keys.signer(alg).kid
    expected_at = by_hand(body["access_token"], HASH_OF_ALG[alg])
    expected_c = by_hand(code, HASH_OF_ALG[alg])
    assert claims["at_hash"] == expected_at
    assert claims["c_hash"] == expected_c
    # A second, independent implementation agrees.
    assert create_half_hash(body["access_token"], alg).decode() == expected_at
    assert create_half_hash(code, alg).decode() == expected_c


async def test_id_token_claims(make_config: Callable[..., Config], clock: FakeClock) -> None:
    config = make_config(clients=authcode_clients())
    _, body = await flow(
        config, clock, scope="openid profile", nonce="n-0S6_WzA2Mj", acr="urn:acr:2", amr=("pwd", "otp"), sid="s-1"
    )
    header, claims = verify(body["id_token"], config, "ES256")
    assert header["typ"] == "JWT"
    iat = int(clock.now)
    assert claims == {
        "iss": config.issuer,
        "sub": "alice",
        "aud": "spa",
        "azp": "spa",
        "iat": iat,
        "exp": iat + config.id_token_ttl,
        "auth_time": auth_time(clock),
        "nonce": "n-0S6_WzA2Mj",
        "acr": "urn:acr:2",
        "amr": ["pwd", "otp"],
        "sid": "s-1",
        "at_hash": by_hand(body["access_token"], "sha256"),
        "c_hash": claims["c_hash"],
        # The token family, shared with the access token (token exchange checks it is not revoked).
        "fid": jwt_claims(body["access_token"])["fid"],
    }


async def test_no_nonce_claim_without_a_nonce(make_config: Callable[..., Config], clock: FakeClock) -> None:
    config = make_config(clients=authcode_clients())
    _, body = await flow(config, clock, scope="openid")
    _, claims = verify(body["id_token"], config, "ES256")
    assert "nonce" not in claims
    assert "acr" not in claims
    assert "amr" not in claims


async def test_no_id_token_without_openid(make_config: Callable[..., Config], clock: FakeClock) -> None:
    config = make_config(clients=authcode_clients())
    _, body = await flow(config, clock, client_id="oauth-app", scope="read")
    assert "id_token" not in body


@pytest.mark.parametrize(("registered", "signed_with"), [("RS256", "RS256"), (None, "ES256"), ("PS512", "ES256")])
async def test_client_registered_algorithm_is_honoured_when_a_key_exists(
    make_config: Callable[..., Config], clock: FakeClock, registered: str | None, signed_with: str
) -> None:
    rp = Client(
        client_id="rp",
        token_endpoint_auth_method="none",
        redirect_uris=(SPA_REDIRECT,),
        scope=("openid",),
        id_token_signed_response_alg=registered,
    )
    config = make_config(keys=keyset("ES256", "RS256"), clients=(*authcode_clients(), rp))
    _, body = await flow(config, clock, client_id="rp", scope="openid")
    header, _ = verify(body["id_token"], config, signed_with)
    assert header["alg"] == signed_with
    # The access token is always signed with the active key.
    assert verify(body["access_token"], config, "ES256")[0]["typ"] == "at+jwt"


class ProfileClaims(Hooks):
    def __init__(self, extra: Mapping[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, str, tuple[str, ...], Mapping[str, Any] | None]] = []
        self.extra = extra

    async def id_token_claims(
        self, client: Client, subject: str, scope: tuple[str, ...], requested_claims: Mapping[str, Any] | None
    ) -> Mapping[str, Any]:
        self.calls.append((client.client_id, subject, scope, requested_claims))
        if self.extra is not None:
            return self.extra
        out: dict[str, Any] = {}
        if "profile" in scope:
            out["name"] = "Alice"  # OIDC Core §5.4: scope claims
        if requested_claims and "email" in requested_claims:
            out["email"] = "alice@example.com"  # OIDC Core §5.5: claims request
        return out


async def test_hook_gets_the_claims_request_id_token_member_and_granted_scope(
    make_config: Callable[..., Config], clock: FakeClock
) -> None:
    hooks = ProfileClaims()
    config = make_config(clients=authcode_clients(), hooks=hooks)
    claims_request = {"id_token": {"email": {"essential": True}}, "userinfo": {"picture": None}}
    _, body = await flow(config, clock, scope="openid profile", claims=claims_request)
    assert hooks.calls == [("spa", "alice", ("openid", "profile"), {"email": {"essential": True}})]
    _, claims = verify(body["id_token"], config, "ES256")
    assert claims["name"] == "Alice"
    assert claims["email"] == "alice@example.com"


@pytest.mark.parametrize("reserved", ["sub", "nonce", "at_hash", "aud", "sid"])
async def test_reserved_claim_from_the_hook_fails_the_request(
    make_config: Callable[..., Config], clock: FakeClock, caplog: pytest.LogCaptureFixture, reserved: str
) -> None:
    config = make_config(clients=authcode_clients(), hooks=ProfileClaims({reserved: "x", "name": "Alice"}))
    code = await spa_code(config, clock, scope="openid")
    with caplog.at_level(logging.ERROR, logger="attesto_asgi.id_token"):
        async with http_client(AttestoMiddleware(not_found_app, config)) as http:
            r = await redeem(http, code)
    assert r.status_code == 400
    assert r.json() == {"error": "invalid_request", "error_description": "Unable to issue token."}
    assert any(reserved in rec.getMessage() and rec.levelno == logging.ERROR for rec in caplog.records)
    assert code not in caplog.text


async def test_id_token_validates_with_authlib_code_id_token(
    make_config: Callable[..., Config], clock: FakeClock
) -> None:
    from authlib.oidc.core import CodeIDToken

    config = make_config(keys=keyset("RS256"), clients=authcode_clients())
    _, body = await flow(config, clock, nonce="abc")
    header, claims = verify(body["id_token"], config, "RS256")
    checked = CodeIDToken(
        claims,
        header,
        {"iss": {"values": [config.issuer]}},
        {"nonce": "abc", "client_id": "spa", "access_token": body["access_token"]},
    )
    checked.validate(now=int(clock.now))
    wrong_nonce = CodeIDToken(claims, header, None, {"nonce": "other", "client_id": "spa"})
    with pytest.raises(Exception, match="nonce"):
        wrong_nonce.validate(now=int(clock.now))


def test_spec_vectors_by_hand_agree_with_the_table() -> None:
    # Guards the literals above: hashlib agrees with the openssl-computed answers.
    for name, (at_hash, c_hash) in KNOWN_ANSWERS.items():
        assert by_hand(SPEC_ACCESS_TOKEN, name) == at_hash
        assert by_hand(SPEC_CODE, name) == c_hash


async def test_discovery_advertises_the_grant_and_s256(client: httpx.AsyncClient) -> None:
    # Discovery lists the grant (from the GRANTS registry) and S256 only (RFC 8414 §2).
    doc = (await client.get("/.well-known/openid-configuration")).json()
    assert "authorization_code" in doc["grant_types_supported"]
    assert doc["code_challenge_methods_supported"] == ["S256"]

"""The floor's code redemption (benchmarks/floor.py ``FloorCode``): the least work a correct
answer needs must still be a correct answer, or the bound it sets means nothing. A code
redeems once; every check of RFC 6749 §4.1.3 and RFC 7636 §4.6 refuses; bearer secrets are
kept only as hashes."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from benchmarks.common import CLIENT_ID, CODE_VERIFIER, REDIRECT_URI, SUBJECT, Keys, code_body, verify_jwt
from benchmarks.floor import FloorCode, _raw
from benchmarks.floor_target import build
from benchmarks.inprocess import call, token_of


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys.generate()


def _hashed(secret: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()).rstrip(b"=")


def _code_of(body: bytes) -> str:
    return body.decode().split("code=", 1)[1].split("&", 1)[0]


async def test_a_code_redeems_once_for_a_signed_token_and_a_hashed_refresh_token(keys: Keys) -> None:
    built = build("authorization_code", "memory://", keys)
    [body] = await built.bodies(1)
    status, content = await call(built.app, body)
    assert status == 200, content
    answer = token_of(content)
    claims = verify_jwt(answer["access_token"], keys)
    assert (claims["sub"], claims["client_id"], claims["scope"]) == (SUBJECT, CLIENT_ID, "read write")
    app = built.app
    assert isinstance(app, FloorCode)
    assert list(app.refresh) == [_hashed(answer["refresh_token"])]
    assert not app.codes
    # RFC 6749 §4.1.2: a code is used once.
    assert await call(built.app, body) == (400, b'{"error":"invalid_grant"}')


@pytest.mark.parametrize(
    "change",
    [
        {"code_verifier": "x" * 43},  # RFC 7636 §4.6: does not match the challenge
        {"code_verifier": CODE_VERIFIER[:42]},  # RFC 7636 §4.1: shorter than 43
        {"redirect_uri": REDIRECT_URI + "/other"},  # RFC 6749 §4.1.3: not identical
        {"code": "unknown"},
    ],
)
async def test_a_failed_check_refuses_and_spends_the_code(keys: Keys, change: dict[str, str]) -> None:
    built = build("authorization_code", "memory://", keys)
    [body] = await built.bodies(1)
    form = {
        "grant_type": "authorization_code",
        "code": _code_of(body),
        "redirect_uri": REDIRECT_URI,
        "code_verifier": CODE_VERIFIER,
        **change,
    }
    assert await call(built.app, urlencode(form).encode()) == (400, b'{"error":"invalid_grant"}')
    assert isinstance(built.app, FloorCode)
    assert not built.app.refresh
    if "code" not in change:
        assert (await call(built.app, body))[0] == 400


async def test_a_missing_parameter_or_another_grant_is_refused(keys: Keys) -> None:
    built = build("authorization_code", "memory://", keys)
    [body] = await built.bodies(1)
    without_verifier = body.decode().split("&code_verifier=")[0].encode()
    assert await call(built.app, without_verifier) == (400, b'{"error":"invalid_request"}')
    status, _ = await call(built.app, b"grant_type=client_credentials")
    assert status == 400
    # Neither spent the code.
    assert (await call(built.app, code_body(_code_of(body))))[0] == 200


@pytest.mark.parametrize("r", [1, 255, 2**255, 2**256 - 1, 0x7F << 248])
@pytest.mark.parametrize("s", [1, 2**255 + 7, 2**200])
def test_the_floor_s_r_s_conversion_equals_decode_dss_signature(r: int, s: int) -> None:
    # Short INTEGERs (padded), top bit set (a 0x00 prefix), the full width.
    assert _raw(encode_dss_signature(r, s)) == r.to_bytes(32, "big") + s.to_bytes(32, "big")

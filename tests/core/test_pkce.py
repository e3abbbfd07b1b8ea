"""PKCE checks (RFC 7636): the Appendix B vector and the verifier syntax of §4.1."""

from __future__ import annotations

import base64
import hashlib

import pytest

from attesto_asgi.core.pkce import challenge_well_formed, s256_challenge, verifier_matches, verifier_well_formed

# RFC 7636 Appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


def test_appendix_b_vector() -> None:
    assert s256_challenge(VERIFIER) == CHALLENGE
    assert verifier_matches(VERIFIER, CHALLENGE)


def test_appendix_b_octets() -> None:
    # RFC 7636 Appendix B: the 32 random octets behind the verifier.
    octets = bytes(
        [116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186,
         22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121]
    )  # fmt: skip
    assert base64.urlsafe_b64encode(octets).rstrip(b"=").decode() == VERIFIER


@pytest.mark.parametrize("length", [43, 44, 100, 128])
def test_verifier_lengths_accepted(length: int) -> None:
    verifier = (UNRESERVED * 2)[:length]
    assert verifier_well_formed(verifier)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert verifier_matches(verifier, challenge)


@pytest.mark.parametrize(
    "verifier",
    [
        "",
        "a" * 42,
        "a" * 129,
        "a" * 42 + "+",
        "a" * 42 + "/",
        "a" * 42 + "=",
        "a" * 42 + " ",
        "a" * 42 + "%",
        "a" * 42 + "é",
        "a" * 43 + "\n",
    ],
)
def test_verifier_syntax_refused(verifier: str) -> None:
    assert not verifier_well_formed(verifier)
    assert not verifier_matches(verifier, s256_challenge("a" * 43))


def test_every_unreserved_character_is_allowed() -> None:
    assert verifier_well_formed(UNRESERVED)


def test_wrong_verifier_does_not_match() -> None:
    assert not verifier_matches("b" * 43, CHALLENGE)
    assert not verifier_matches(VERIFIER, s256_challenge("b" * 43))


def test_plain_transform_never_matches() -> None:
    # With "plain" the challenge equals the verifier; S256 must not accept that.
    assert not verifier_matches(VERIFIER, VERIFIER)


@pytest.mark.parametrize(
    ("challenge", "ok"),
    [(CHALLENGE, True), (CHALLENGE[:-1], False), (CHALLENGE + "A", False), (CHALLENGE[:-1] + "=", False)],
)
def test_challenge_syntax(challenge: str, ok: bool) -> None:
    assert challenge_well_formed(challenge) is ok

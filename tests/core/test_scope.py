"""Scope syntax (RFC 6749 §3.3); parsed scopes are cached, errors must still be raised each time."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from attesto_asgi import AttestoMiddleware, Client, Config, OAuthError, issue_code
from attesto_asgi.core.scope import check_resources, parse_scope
from attesto_asgi.core.tokens import family_revocation_until
from tests.helpers import SVC_SECRET, http_client, not_found_app


def test_omitted_scope_is_none() -> None:
    assert parse_scope(None) is None


def test_tokens_in_order_with_duplicates_dropped_every_time() -> None:
    for _ in range(3):  # later calls come from the cache
        assert parse_scope("read write read openid") == ("read", "write", "openid")


@pytest.mark.parametrize("bad", ["", " read", "read ", "read  write", 'say"hi', "back\\slash", "tab\tx", "é"])
def test_malformed_scope_is_invalid_scope_on_every_attempt(bad: str) -> None:
    for _ in range(2):  # a failure is never cached as a success
        with pytest.raises(OAuthError) as info:
            parse_scope(bad)
        assert info.value.error == "invalid_scope"


@pytest.mark.parametrize(
    "resource", ["http://[", "https://a]b", "https://[zz]/", "relative/path", "https:///x", "urn:x#f"]
)
def test_a_resource_that_is_no_absolute_uri_is_invalid_target(resource: str) -> None:
    # RFC 8707 §2: an absolute URI without a fragment, else invalid_target; a URL that
    # urlsplit itself refuses (a broken IPv6 host) too, never an exception.
    with pytest.raises(OAuthError) as caught:
        check_resources(("https://api.example.com", resource))
    assert caught.value.error == "invalid_target"
    check_resources(("https://api.example.com", "urn:example:api", "https://[::1]:8443/x"))


async def test_a_broken_resource_is_invalid_target_at_every_entry(make_config: Callable[..., Config]) -> None:
    config = make_config()
    async with http_client(AttestoMiddleware(not_found_app, config)) as http:
        r = await http.post(
            "/oauth/token", data={"grant_type": "client_credentials", "resource": "http://["}, auth=("svc", SVC_SECRET)
        )
    assert (r.status_code, r.json()["error"]) == (400, "invalid_target")
    with pytest.raises(OAuthError) as caught:
        await issue_code(
            config,
            client_id="spa",
            redirect_uri="http://localhost:3000/cb",
            subject="alice",
            scope="openid",
            code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            auth_time=int(config.clock()),
            resource=["https://[x"],
        )
    assert caught.value.error == "invalid_target"


def test_a_family_revocation_outlasts_every_token_that_carries_the_family(make_config: Callable[..., Config]) -> None:
    # Access tokens (the owner's lifetime, here longer than the configured one) and ID tokens
    # (a token exchange accepts them as subject tokens) carry fid: the revocation must
    # outlast each, even when the family itself ends sooner.
    config = make_config(id_token_ttl=3600, access_token_ttl=900)
    owner = Client(client_id="o", client_secret="s" * 32, access_token_ttl=7200)
    now = 1_800_000_000.0
    assert family_revocation_until(config, None, now, family_expires_at=now + 100) == now + 3600
    assert family_revocation_until(config, owner, now, family_expires_at=now + 100) == now + 7200
    assert family_revocation_until(config, owner, now, family_expires_at=now + 9000) == now + 9000

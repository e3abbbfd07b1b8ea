"""Scope syntax (RFC 6749 §3.3); parsed scopes are cached, errors must still be raised each time."""

from __future__ import annotations

import pytest

from attesto_asgi import OAuthError
from attesto_asgi.core.scope import parse_scope


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

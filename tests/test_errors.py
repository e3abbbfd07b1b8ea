"""``OAuthError``: immutable data, and still a well-behaved exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attesto_asgi import OAuthError
from attesto_asgi.errors import quoted
from tests.helpers import ERROR_DESCRIPTION


def test_fields_are_immutable() -> None:
    err = OAuthError("invalid_grant", detail="code expired")
    with pytest.raises(AttributeError):
        err.error = "invalid_request"
    with pytest.raises(AttributeError):
        err.detail = "other"
    assert (err.error, err.detail, err.status) == ("invalid_grant", "code expired", 400)


def test_only_the_exception_machinerys_dunders_are_writable() -> None:
    err = OAuthError("invalid_grant")
    err.__cause__ = ValueError("underneath")
    assert isinstance(err.__cause__, ValueError)
    with pytest.raises(AttributeError):
        err.__class__ = ValueError  # type: ignore[assignment]


def test_notes_can_be_added() -> None:
    # PEP 678: pytest, hypothesis and exception groups annotate exceptions they pass on.
    err = OAuthError("invalid_request")
    err.add_note("seen in a test")
    assert err.__notes__ == ["seen in a test"]
    assert err.body() == {"error": "invalid_request", "error_description": err.description}


@given(st.text())
def test_a_description_keeps_to_the_characters_rfc_6749_allows(text: str) -> None:
    # RFC 6749 §5.2: error_description excludes '"', '\' and all but printable ASCII.
    description = OAuthError("invalid_request", text).body().get("error_description", "")
    assert ERROR_DESCRIPTION.fullmatch(description)
    assert len(description) == len(text)
    allowed = [c for c in text if c not in '"\\' and " " <= c <= "~"]
    assert [c for c in description if c != "?"] == [c for c in allowed if c != "?"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("password", "'password'"),
        ("ES256", "'ES256'"),
        ("urn:ietf:params:oauth:grant-type:device_code", "'urn:ietf:params:oauth:grant-type:device_code'"),
        ("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", "<41 characters>"),
        ("Xq3vLzP0aB8kR2mN5tY7wE1uI4oP6aS9dF0gH3jK5lZ", "<43 characters>"),  # a code's shape
        ("with space", "<10 characters>"),
        (None, "<NoneType>"),
    ],
)
def test_a_sent_value_is_quoted_only_when_it_cannot_be_a_credential(value: object, shown: str) -> None:
    assert quoted(value) == shown

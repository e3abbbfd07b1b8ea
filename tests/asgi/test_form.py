"""Strict form parsing (RFC 6749 §3.1, §3.2), as a unit and through HTTP."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attesto_asgi import OAuthError
from attesto_asgi.asgi.form import MAX_FIELDS, MULTI_VALUED, parse_form
from tests.helpers import SVC_SECRET

AUTH = ("svc", SVC_SECRET)
FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_parameters_without_a_value_are_omitted() -> None:
    form = parse_form(b"grant_type=client_credentials&scope=&resource=")
    assert form.params == {"grant_type": "client_credentials"}
    assert form.multi == {}


def test_multi_valued_resource_and_audience_keep_order() -> None:
    form = parse_form(b"resource=https%3A%2F%2Fa&audience=x&resource=https%3A%2F%2Fb&audience=y")
    assert form.multi == {"resource": ("https://a", "https://b"), "audience": ("x", "y")}


def test_plus_and_percent_decode() -> None:
    assert parse_form(b"scope=read+write&x=%C3%BC").params == {"scope": "read write", "x": "ü"}


@pytest.mark.parametrize(
    "body",
    [
        b"grant_type=a&grant_type=b",
        b"scope=read&scope=read",
        b"a=%zz",
        b"a=%4",
        b"a=%FF",  # not UTF-8
        b"a=\xc3\xbc",  # raw non-ASCII byte
        b"&&",
        b"=novalue",
        b"a=1&" * 70,
    ],
)
def test_malformed_forms_are_invalid_request(body: bytes) -> None:
    with pytest.raises(OAuthError) as info:
        parse_form(body)
    assert info.value.error == "invalid_request"


@pytest.mark.parametrize(
    ("body", "description"),
    [
        (b"scope=a&scope=b", "The scope parameter is repeated."),
        (b"%C3%BC=1&%C3%BC=2", "A parameter is repeated."),  # named back only in plain ASCII
        (b"a%22b=1&a%22b=2", "A parameter is repeated."),
        (b"x" * 65 + b"=1&" + b"x" * 65 + b"=2", "A parameter is repeated."),
    ],
)
def test_a_repeated_parameter_is_named_back_only_when_its_name_is_plain(body: bytes, description: str) -> None:
    with pytest.raises(OAuthError) as info:
        parse_form(body)
    assert info.value.description == description


def reference(body: bytes) -> tuple[dict[str, str], dict[str, tuple[str, ...]]] | None:
    """What parse_form must answer, written plainly on parse_qsl: None where it must refuse.
    Stricter than parse_qsl in one way: a "%" not followed by two hex digits is refused,
    where parse_qsl keeps it as it is."""
    if re.search(rb"%(?![0-9A-Fa-f]{2})", body):
        return None
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    single = [(k, v) for k, v in pairs if k not in MULTI_VALUED]
    names = [k for k, _ in single]
    if "" in names or len(names) != len(set(names)):
        return None
    multi: dict[str, list[str]] = {}
    for k, v in pairs:
        if k in MULTI_VALUED and v:
            multi.setdefault(k, []).append(v)
    return {k: v for k, v in single if v}, {k: tuple(v) for k, v in multi.items()}


_names = st.sampled_from(["grant_type", "scope", "code", "resource", "audience", "client_id", "x", ""])
_values = st.sampled_from(["", "a", "read write", "https://rs.example/x", "ü", "a+b", "%"])


@given(st.lists(st.tuples(_names, _values), min_size=1, max_size=8))
def test_parse_form_agrees_with_a_plain_reading_of_parse_qsl(fields: list[tuple[str, str]]) -> None:
    # The fast path (names once, none blank) and the general loop must answer alike.
    body = urlencode(fields).encode()
    expected = reference(body)
    if expected is None:
        with pytest.raises(OAuthError):
            parse_form(body)
        return
    form = parse_form(body)
    assert (form.params, form.multi) == expected


# Raw bodies, not urlencode's: fields of stray "=", "+", "%", hex digits and bytes outside
# ASCII, joined by "&" (empty fields included), so the reading is checked against
# parse_qsl where it must refuse as well as where it must decode.
_raw_field = st.lists(
    st.sampled_from(["a", "Z", "_", "=", "+", "%", "2", "B", "C3", "bC", "FF", "%41", " ", "\u00fc", "code"]),
    max_size=8,
).map("".join)
_raw = st.lists(_raw_field, min_size=1, max_size=6).map(lambda fields: "&".join(fields).encode())


@given(_raw)
def test_parse_form_agrees_with_parse_qsl_on_raw_bodies(body: bytes) -> None:
    expected = reference(body)
    if expected is None:
        with pytest.raises(OAuthError) as info:
            parse_form(body)
        assert info.value.error == "invalid_request"
        return
    form = parse_form(body)
    assert (form.params, form.multi) == expected


def test_field_count_limit_matches_parse_qsl() -> None:
    at_limit = "&".join(f"f{i}=v" for i in range(MAX_FIELDS)).encode()
    assert len(parse_form(at_limit).params) == MAX_FIELDS
    with pytest.raises(OAuthError):
        parse_form(at_limit + b"&x=1")


async def raw(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str] | None = None, **kw: Any
) -> httpx.Response:
    return await client.post("/oauth/token", content=body, headers={**FORM, **(headers or {})}, auth=AUTH, **kw)


async def test_duplicate_parameter_over_http(client: httpx.AsyncClient) -> None:
    r = await raw(client, b"grant_type=client_credentials&scope=read&scope=write")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"


async def test_content_type_must_be_form(client: httpx.AsyncClient) -> None:
    r = await client.post("/oauth/token", json={"grant_type": "client_credentials"}, auth=AUTH)
    assert r.json()["error"] == "invalid_request"
    ok = await raw(
        client, b"grant_type=client_credentials", {"content-type": "Application/X-WWW-Form-Urlencoded; charset=UTF-8"}
    )
    assert ok.status_code == 200


async def test_body_over_64_kib_is_413_with_oauth_error(client: httpx.AsyncClient) -> None:
    body = b"grant_type=client_credentials&pad=" + b"a" * (64 * 1024)
    r = await raw(client, body)
    assert r.status_code == 413
    assert r.json()["error"] == "invalid_request"


async def test_body_over_limit_without_content_length_is_cut_off_while_streaming(client: httpx.AsyncClient) -> None:
    sent: list[int] = []

    async def chunks() -> Any:
        for _ in range(100):
            sent.append(1)
            yield b"a" * 4096

    r = await client.post("/oauth/token", content=chunks(), headers=FORM, auth=AUTH)
    assert r.status_code == 413
    assert r.json()["error"] == "invalid_request"


@pytest.mark.parametrize("query", ["client_secret=x", "grant_type=client_credentials", "client%5Fid=svc"])
async def test_credentials_or_grant_in_query_are_invalid_request(client: httpx.AsyncClient, query: str) -> None:
    r = await client.post(f"/oauth/token?{query}", data={"grant_type": "client_credentials"}, auth=AUTH)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


async def test_unrelated_query_parameters_are_ignored(client: httpx.AsyncClient) -> None:
    r = await client.post("/oauth/token?trace=1", data={"grant_type": "client_credentials"}, auth=AUTH)
    assert r.status_code == 200


async def test_missing_grant_type_is_invalid_request(client: httpx.AsyncClient) -> None:
    r = await raw(client, b"scope=read")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"

"""The token, revocation and introspection endpoints under arbitrary requests: every
refusal is a precise RFC 6749 §5.2 error (never a 5xx), no request that carries nothing
ever issued changes stored state, and no credential sent comes back, in a response body or
in an event."""

from __future__ import annotations

import asyncio
import base64
import copy
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attesto_asgi import AttestoMiddleware, Config
from attesto_asgi.memory import MemoryStore
from tests.core.grants.authcode_helpers import SPA_REDIRECT, pkce_pair, spa_code
from tests.families import FamilyHooks
from tests.helpers import SVC_SECRET, TOKEN_URL, FakeClock, http_client, not_found_app

# RFC 6749 §5.2, and RFC 8707 §2 / RFC 8693 §2.2.2 (invalid_target).
TOKEN_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
}
DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
GRANTS = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "password",
]
NAMES = [
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "scope",
    "resource",
    "audience",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
    "assertion",
]
# Values a credential could be: long and distinctive, so finding one in a response or an
# event cannot be a coincidence. Anything shorter is fuzz for the parser, not checked.
SECRETISH = st.from_regex(r"[A-Za-z0-9_\-.~]{24,80}", fullmatch=True)
CREDENTIALS = {
    "code",
    "code_verifier",
    "refresh_token",
    "client_secret",
    "client_assertion",
    "subject_token",
    "actor_token",
    "assertion",
}
VALUES = st.one_of(
    SECRETISH,
    st.text(max_size=40),
    st.sampled_from(["", " ", "openid", "read write", "offline_access", SPA_REDIRECT, "spa", "svc", "https://x"]),
    st.sampled_from(GRANTS),
)
FIELDS = st.lists(st.tuples(st.one_of(st.sampled_from(NAMES), st.text(max_size=12)), VALUES), max_size=10)
# Well-formed but unknown credentials, so a request gets past the parser to the store.
CODE = st.from_regex(r"[A-Za-z0-9_-]{43}", fullmatch=True)
VERIFIER = st.from_regex(r"[A-Za-z0-9._~-]{43,128}", fullmatch=True)
SECRET_PART = st.from_regex(r"[A-Za-z0-9_-]{43}", fullmatch=True)
JWT_LIKE = st.builds(".".join, st.lists(st.from_regex(r"[A-Za-z0-9_-]{8,60}", fullmatch=True), min_size=3, max_size=3))
TOKEN_TYPES = st.sampled_from(
    [
        "urn:ietf:params:oauth:token-type:access_token",
        "urn:ietf:params:oauth:token-type:id_token",
        "urn:ietf:params:oauth:token-type:refresh_token",
        "urn:ietf:params:oauth:token-type:jwt",
        "bogus",
    ]
)


@st.composite
def shaped(draw: st.DrawFn, family_id: str) -> list[tuple[str, str]]:
    """A request shaped like one of the grants, its parameters well formed but unknown, some
    left out, some repeated, with random extras: what reaches the grants and the store."""
    grant = draw(st.sampled_from(GRANTS))
    fields = [("grant_type", grant), ("client_id", draw(st.sampled_from(["spa", "spa", "spa", "svc", "nobody"])))]
    if grant == "authorization_code":
        fields += [
            ("code", draw(CODE)),
            ("redirect_uri", draw(st.sampled_from([SPA_REDIRECT, SPA_REDIRECT + "/", "http://evil.example/cb"]))),
            ("code_verifier", draw(VERIFIER)),
        ]
    elif grant == "refresh_token":
        family = draw(st.one_of(st.just(family_id), st.from_regex(r"[A-Za-z0-9_-]{22}", fullmatch=True)))
        fields.append(("refresh_token", f"{family}.{draw(SECRET_PART)}"))
    elif grant.endswith("token-exchange"):
        fields += [("subject_token", draw(st.one_of(JWT_LIKE, SECRETISH))), ("subject_token_type", draw(TOKEN_TYPES))]
        if draw(st.booleans()):
            fields += [("actor_token", draw(JWT_LIKE)), ("actor_token_type", draw(TOKEN_TYPES))]
    elif grant.endswith("jwt-bearer"):
        fields.append(("assertion", draw(JWT_LIKE)))
    if draw(st.booleans()):
        fields.append(("scope", draw(st.sampled_from(["openid", "offline_access", "read", "admin", "openid openid"]))))
    kept = [f for i, f in enumerate(fields) if i == 0 or draw(st.integers(0, 7)) > 0]
    if draw(st.integers(0, 9)) == 0:
        kept.append(draw(st.sampled_from(fields)))  # one repeated
    extras = draw(st.lists(st.tuples(st.from_regex(r"x_[a-z]{1,8}", fullmatch=True), VALUES), max_size=2))
    return draw(st.permutations(kept + extras))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


AUTH = st.one_of(
    st.none(),
    st.builds(basic, st.sampled_from(["svc", "spa", "poster", "nobody"]), SECRETISH),
    st.builds(basic, st.text(max_size=10), st.text(max_size=10)),
    st.just(basic("svc", SVC_SECRET)),  # the right secret: client authentication passes
    st.sampled_from(["Basic", "Basic !!!", "Bearer abc", "basic c3ZjOg==", "Basic " + "A" * 300]),
)


def snapshot(store: MemoryStore) -> dict[str, Any]:
    """Every piece of state the memory store keeps (its records are frozen)."""
    names = ("_codes", "_tombstones", "_refresh", "_families", "_revoked_jtis", "_claims")
    return {name: copy.copy(getattr(store, name)) for name in names}


def sent_credentials(fields: list[tuple[str, str]], auth: str | None) -> set[str]:
    """What was sent as a credential, less anything also sent as something that may be
    named back (a client_id, a parameter name)."""
    sent = {v for k, v in fields if k in CREDENTIALS and len(v) >= 24}
    public = {v for k, v in fields if k not in CREDENTIALS} | {k for k, _ in fields}
    if auth and auth.startswith("Basic "):
        try:
            user, _, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        except ValueError:
            user, password = "", ""
        public.add(user)
        if len(password) >= 24 and password != SVC_SECRET:
            sent.add(password)
    return {c for c in sent if not any(c in p for p in public)}


async def seeded(make_config: Callable[..., Config], clock: FakeClock) -> tuple[Config, FamilyHooks, Any, str]:
    """A config whose store holds a redeemed code's tombstone, a live refresh token and an
    unredeemed code: state a faulty refusal could spend, revoke or rotate. Also the live
    refresh token's family."""
    hooks = FamilyHooks()
    config = make_config(hooks=hooks)
    app = AttestoMiddleware(not_found_app, config)
    for _ in range(2):
        verifier, challenge = pkce_pair()
        code = await spa_code(config, clock, challenge=challenge)
    async with http_client(app) as http:  # the first code stays unredeemed
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": SPA_REDIRECT}
        form |= {"code_verifier": verifier, "client_id": "spa"}
        r = await http.post(TOKEN_URL, data=form)
        assert r.status_code == 200, r.text
        family_id = r.json()["refresh_token"].partition(".")[0]
    return config, hooks, app, family_id


def run_property(
    make_config: Callable[..., Config],
    clock: FakeClock,
    path: str,
    forms: Callable[[str], st.SearchStrategy[list[tuple[str, str]]]],
    errors: set[str],
    on_success: Callable[[httpx.Response], None],
) -> None:
    """Post the requests ``forms`` draws to ``path`` and check every answer: a success
    ``on_success`` accepts and that changes nothing, or a refusal whose code is in ``errors``
    (400, or 401 with WWW-Authenticate), that changes nothing either and repeats no
    credential it was sent."""
    with asyncio.Runner() as runner:
        config, hooks, app, family_id = runner.run(seeded(make_config, clock))
        store = config.store
        assert isinstance(store, MemoryStore)
        before = snapshot(store)
        assert before["_codes"]
        assert before["_refresh"]
        assert before["_tombstones"]

        async def post(fields: list[tuple[str, str]], auth: str | None, raw: bytes | None) -> httpx.Response:
            headers = {"content-type": "application/x-www-form-urlencoded"}
            if auth is not None:
                headers["authorization"] = auth
            body = raw if raw is not None else urlencode(fields).encode()
            async with http_client(app) as http:
                return await http.post(path, content=body, headers=headers)

        @settings(
            max_examples=400,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            fields=st.one_of(forms(family_id), forms(family_id), forms(family_id), FIELDS),
            auth=st.one_of(st.none(), st.none(), st.none(), AUTH),
            raw=st.one_of(st.none(), st.none(), st.none(), st.binary(max_size=200)),
        )
        def check(fields: list[tuple[str, str]], auth: str | None, raw: bytes | None) -> None:
            hooks.events.clear()
            r = runner.run(post(fields, auth, raw))
            assert r.status_code < 500, r.text
            if r.status_code == 200:
                on_success(r)
            else:
                assert r.status_code in (400, 401), r.text
                assert r.headers["content-type"].startswith("application/json")
                error = r.json()["error"]
                assert error in errors, r.text
                # RFC 6749 §5.2: error_description is printable ASCII but '"' and '\'.
                assert DESCRIPTION.fullmatch(r.json().get("error_description", "")), r.text
                if r.status_code == 401:
                    # RFC 6749 §5.2: a failed Authorization-header authentication is a 401
                    # with WWW-Authenticate.
                    assert error == "invalid_client"
                    assert "www-authenticate" in r.headers
            # Nothing valid was ever sent: every code, tombstone, refresh token and
            # revocation stays as it was.
            assert snapshot(store) == before
            # Nothing sent as a credential comes back, in the body or in an event.
            recorded = r.text + "".join(repr(e) for e in hooks.events)
            leaked = [c for c in sent_credentials(fields, auth) if c in recorded]
            assert not leaked, (leaked, r.text)

        check()


def issued_by_client_credentials(r: httpx.Response) -> None:
    # The one request that can succeed: svc's right secret and a client_credentials grant.
    assert r.json()["token_type"] == "Bearer"


def test_a_refused_token_request_is_an_oauth_error_that_changes_nothing(
    make_config: Callable[..., Config], clock: FakeClock
) -> None:
    run_property(make_config, clock, TOKEN_URL, shaped, TOKEN_ERRORS, issued_by_client_credentials)


@st.composite
def token_shaped(draw: st.DrawFn, family_id: str) -> list[tuple[str, str]]:
    """A revocation or introspection request for a token that was never issued: shaped like
    a code, a refresh token (of the live family too), or a JWT."""
    family = draw(st.one_of(st.just(family_id), st.from_regex(r"[A-Za-z0-9_-]{22}", fullmatch=True)))
    token = draw(st.one_of(CODE, st.just(f"{family}.{draw(SECRET_PART)}"), JWT_LIKE, SECRETISH))
    fields = [("token", token), ("client_id", draw(st.sampled_from(["spa", "spa", "svc", "nobody"])))]
    if draw(st.booleans()):
        fields.append(("token_type_hint", draw(st.sampled_from(["access_token", "refresh_token", "id_token", "x"]))))
    kept = [f for i, f in enumerate(fields) if i == 0 or draw(st.integers(0, 3)) > 0]
    extras = draw(st.lists(st.tuples(st.from_regex(r"x_[a-z]{1,8}", fullmatch=True), VALUES), max_size=2))
    return draw(st.permutations(kept + extras))


def revoked_nothing(r: httpx.Response) -> None:
    # RFC 7009 §2.2: an invalid token is answered 200 too (and nothing is revoked).
    assert r.content in (b"", b"{}"), r.text


def inactive(r: httpx.Response) -> None:
    # RFC 7662 §2.2: a token that is not active is {"active": false}, and nothing more.
    assert r.json() == {"active": False}, r.text


def test_a_revocation_of_an_unissued_token_changes_nothing(
    make_config: Callable[..., Config], clock: FakeClock
) -> None:
    # RFC 7009 §2.2.1 adds unsupported_token_type to RFC 6749 §5.2's codes.
    errors = {"invalid_request", "invalid_client", "unauthorized_client", "unsupported_token_type"}
    run_property(make_config, clock, "/oauth/revoke", token_shaped, errors, revoked_nothing)


def test_an_introspection_of_an_unissued_token_changes_nothing(
    make_config: Callable[..., Config], clock: FakeClock
) -> None:
    errors = {"invalid_request", "invalid_client", "unauthorized_client"}
    run_property(make_config, clock, "/oauth/introspect", token_shaped, errors, inactive)

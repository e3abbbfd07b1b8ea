"""Property checks of the token, revocation and introspection endpoints, on any store:
requests drawn at random (arbitrary and shaped like each endpoint's, carrying nothing ever
issued) get a precise RFC 6749 §5.2 error (never a 5xx) or a success that issues or
reveals nothing of the stored state, never change that state, and never repeat a
credential they sent, in a response body or an event. ``run_property`` runs one endpoint's
check; the tests choose the store (tests/asgi: memory, tests/stores: SQLite and Redis)."""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import Callable, Coroutine
from typing import Any, Final, NamedTuple
from urllib.parse import urlencode

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from attesto_asgi import AttestoMiddleware, Config
from attesto_asgi.memory import MemoryStore
from attesto_asgi.store import Store
from tests.core.grants.authcode_helpers import SPA_REDIRECT, pkce_pair, spa_code
from tests.families import FamilyHooks
from tests.helpers import ERROR_DESCRIPTION, SVC_SECRET, TOKEN_URL, FakeClock, http_client, not_found_app
from tests.helpers import examples as scaled

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


State = Callable[[Store], Coroutine[Any, Any, object]]


async def memory_state(store: Store) -> object:
    """Every piece of state the memory store keeps (its records are frozen)."""
    assert isinstance(store, MemoryStore)
    names = ("_codes", "_tombstones", "_refresh", "_families", "_revoked_jtis", "_claims")
    state = {name: copy.copy(getattr(store, name)) for name in names}
    assert state["_codes"]
    assert state["_refresh"]
    assert state["_tombstones"]
    return state


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


async def seeded(make_config: Callable[..., Config], clock: FakeClock, store: Store) -> tuple[FamilyHooks, Any, str]:
    """The app on ``store``, seeded with a redeemed code's tombstone, a live refresh token and
    an unredeemed code (state a faulty refusal could spend, revoke or rotate); its hooks
    (recording events) and the live refresh token's family."""
    hooks = FamilyHooks()
    config = make_config(hooks=hooks, store=store)
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
    return hooks, app, family_id


Form = list[tuple[str, str]]


class Endpoint(NamedTuple):
    path: str
    forms: Callable[[str], st.SearchStrategy[Form]]
    errors: set[str]
    on_success: Callable[[httpx.Response], None]
    # Requests always tried (given the live family), before the drawn ones: the paths that
    # reach the store, so a small run cannot miss them.
    pinned: Callable[[str], list[tuple[Form, str | None]]]


def run_property(
    make_config: Callable[..., Config],
    clock: FakeClock,
    endpoint: Endpoint,
    open_store: Callable[[], Store],
    state: State,
    examples: int = 400,
) -> None:
    """Post the requests ``endpoint.forms`` draws to its path, on a store ``open_store``
    opens (in the event loop the requests run in) and seeds, and check every answer: a
    success ``on_success`` accepts, or a refusal whose code is in ``errors`` (400, or 401
    with WWW-Authenticate); either way ``state`` reads the store unchanged and no
    credential sent comes back."""
    path, forms, errors, on_success, pinned = endpoint
    with asyncio.Runner() as runner:
        store = runner.run(_opened(open_store))
        hooks, app, family_id = runner.run(seeded(make_config, clock, store))
        before = runner.run(state(store))

        async def post(fields: list[tuple[str, str]], auth: str | None, raw: bytes | None) -> httpx.Response:
            headers = {"content-type": "application/x-www-form-urlencoded"}
            if auth is not None:
                headers["authorization"] = auth
            body = raw if raw is not None else urlencode(fields).encode()
            async with http_client(app) as http:
                return await http.post(path, content=body, headers=headers)

        @settings(
            max_examples=scaled(examples),
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
                assert ERROR_DESCRIPTION.fullmatch(r.json().get("error_description", "")), r.text
                # RFC 6749 §5.2: a failed Authorization-header authentication is a 401 with
                # WWW-Authenticate; a 401 is that and nothing else.
                if error == "invalid_client" and auth is not None:
                    assert r.status_code == 401, r.text
                if r.status_code == 401:
                    assert error == "invalid_client"
                    assert "www-authenticate" in r.headers
            # Nothing valid was ever sent: every code, tombstone, refresh token and
            # revocation stays as it was.
            assert runner.run(state(store)) == before
            # Nothing sent as a credential comes back, in the body or in an event.
            recorded = r.text + "".join(repr(e) for e in hooks.events)
            leaked = [c for c in sent_credentials(fields, auth) if c in recorded]
            assert not leaked, (leaked, r.text)

        for fields, auth in pinned(family_id):
            check = example(fields=fields, auth=auth, raw=None)(check)
        try:
            check()
        finally:
            runner.run(store.aclose())


async def _opened(open_store: Callable[[], Store]) -> Store:
    return open_store()


def issued_by_client_credentials(r: httpx.Response) -> None:
    # The one request that can succeed: svc's right secret and a client_credentials grant.
    assert r.json()["token_type"] == "Bearer"


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


def token_pinned(family_id: str) -> list[tuple[Form, str | None]]:
    """An unknown refresh token of the live family and of no family, an unknown code."""
    return [
        ([("grant_type", "refresh_token"), ("client_id", "spa"), ("refresh_token", f"{family_id}.{'A' * 43}")], None),
        ([("grant_type", "refresh_token"), ("client_id", "spa"), ("refresh_token", f"{'F' * 22}.{'A' * 43}")], None),
        (
            [
                ("grant_type", "authorization_code"),
                ("client_id", "spa"),
                ("code", "C" * 43),
                ("redirect_uri", SPA_REDIRECT),
                ("code_verifier", "V" * 43),
            ],
            None,
        ),
    ]


def presented_pinned(family_id: str) -> list[tuple[Form, str | None]]:
    """An unknown refresh token of the live family, an unknown code and JWT, presented by the
    family's own client and by a confidential one."""
    tokens = [f"{family_id}.{'A' * 43}", "C" * 43, "eyJhbGciOiJFUzI1NiJ9.e30.c2lnbmF0dXJlc2lnbmF0dXJl"]
    return [([("token", t), ("client_id", "spa")], None) for t in tokens] + [
        ([("token", t), ("token_type_hint", "refresh_token")], basic("svc", SVC_SECRET)) for t in tokens
    ]


ENDPOINTS: Final = {
    "token": Endpoint(TOKEN_URL, shaped, TOKEN_ERRORS, issued_by_client_credentials, token_pinned),
    # RFC 7009 §2.2.1 adds unsupported_token_type to RFC 6749 §5.2's codes.
    "revocation": Endpoint(
        "/oauth/revoke",
        token_shaped,
        {"invalid_request", "invalid_client", "unauthorized_client", "unsupported_token_type"},
        revoked_nothing,
        presented_pinned,
    ),
    "introspection": Endpoint(
        "/oauth/introspect",
        token_shaped,
        {"invalid_request", "invalid_client", "unauthorized_client"},
        inactive,
        presented_pinned,
    ),
}

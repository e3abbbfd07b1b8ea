"""``issue_code``: validation against the client and what is stored (DESIGN §2, §6)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attesto_asgi import Client, Config, Hooks, MemoryStore, OAuthError, issue_code
from attesto_asgi._secrets import token_hash
from attesto_asgi.core.codes import CODE_REUSE_MARGIN, MAX_NONCE_LENGTH
from attesto_asgi.model import CodeRecord
from tests.core.grants.authcode_helpers import (
    API,
    RFC7636_CHALLENGE,
    SPA_REDIRECT,
    WEB_REDIRECT,
    authcode_clients,
)
from tests.helpers import ERROR_DESCRIPTION, FakeClock, examples


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config(clients=authcode_clients())


async def code_for(config: Config, clock: FakeClock, **overrides: Any) -> str:
    options: dict[str, Any] = {
        "client_id": "spa",
        "redirect_uri": SPA_REDIRECT,
        "subject": "alice",
        "scope": "openid offline_access",
        "code_challenge": RFC7636_CHALLENGE,
        "auth_time": clock.now - 10,
    }
    options.update(overrides)
    return await issue_code(config, **options)


async def stored(config: Config, code: str) -> CodeRecord:
    record = await config.backend.take_code(token_hash(code))
    assert isinstance(record, CodeRecord)
    return record


async def test_stores_everything_bound_to_the_code(config: Config, clock: FakeClock) -> None:
    claims = {"id_token": {"email": {"essential": True}}, "userinfo": None}
    code = await code_for(
        config,
        clock,
        client_id="web",
        redirect_uri=WEB_REDIRECT,
        scope="openid email read",
        nonce="n-0S6_WzA2Mj",
        acr="urn:acr:2",
        amr=["pwd", "hwk"],
        sid="sid-1",
        claims=claims,
        resource=[API],
    )
    assert len(code) == 43  # 256 bits, base64url
    record = await stored(config, code)
    assert record.code_hash == token_hash(code)
    assert (record.client_id, record.redirect_uri, record.subject) == ("web", WEB_REDIRECT, "alice")
    assert record.scope == ("openid", "email", "read")
    assert (record.nonce, record.acr, record.amr, record.sid) == ("n-0S6_WzA2Mj", "urn:acr:2", ("pwd", "hwk"), "sid-1")
    assert record.auth_time == int(clock.now - 10)
    assert record.claims == claims
    assert record.resource == (API,)
    assert (record.code_challenge, record.code_challenge_method) == (RFC7636_CHALLENGE, "S256")
    assert record.issued_at == clock.now
    assert record.expires_at == clock.now + 60  # DESIGN §2: codes live 60 s by default
    assert record.reuse_detect_until == record.expires_at + CODE_REUSE_MARGIN
    assert len(record.family_id) == 22


async def test_the_code_itself_is_never_stored(config: Config, clock: FakeClock) -> None:
    code = await code_for(config, clock)
    store = config.backend
    assert isinstance(store, MemoryStore)
    dump = msgspec.json.encode([vars(store)[k] for k in vars(store) if not k.startswith("_clock")]).decode()
    assert code not in dump
    assert token_hash(code) in dump


async def test_claims_request_is_stored_as_json_data(config: Config, clock: FakeClock) -> None:
    code = await code_for(config, clock, claims={"id_token": {"acr": {"values": ("urn:a", "urn:b")}}})
    assert (await stored(config, code)).claims == {"id_token": {"acr": {"values": ["urn:a", "urn:b"]}}}


async def test_each_code_is_new_and_starts_its_own_family(config: Config, clock: FakeClock) -> None:
    a, b = await code_for(config, clock), await code_for(config, clock)
    assert a != b
    assert (await stored(config, a)).family_id != (await stored(config, b)).family_id


async def test_code_ttl_follows_the_config(make_config: Callable[..., Config], clock: FakeClock) -> None:
    config = make_config(clients=authcode_clients(), code_ttl=30)
    record = await stored(config, await code_for(config, clock))
    assert record.expires_at == clock.now + 30


async def test_omitted_scope_is_the_client_default(config: Config, clock: FakeClock) -> None:
    record = await stored(config, await code_for(config, clock, scope=None))
    assert record.scope == ("openid", "profile", "offline_access")


async def test_scope_as_consented_tokens(config: Config, clock: FakeClock) -> None:
    record = await stored(config, await code_for(config, clock, scope=("openid", "profile")))
    assert record.scope == ("openid", "profile")


async def test_confidential_client_registered_without_pkce(config: Config, clock: FakeClock) -> None:
    code = await code_for(
        config, clock, client_id="legacy", redirect_uri=WEB_REDIRECT, scope="read", code_challenge=None
    )
    record = await stored(config, code)
    assert record.code_challenge is None
    assert record.code_challenge_method is None


async def test_confidential_client_without_pkce_may_still_send_a_challenge(config: Config, clock: FakeClock) -> None:
    code = await code_for(config, clock, client_id="legacy", redirect_uri=WEB_REDIRECT, scope="read")
    assert (await stored(config, code)).code_challenge == RFC7636_CHALLENGE


@pytest.mark.parametrize(
    ("overrides", "error", "detail"),
    [
        ({"client_id": "nobody"}, "invalid_request", "unknown client"),
        # RFC 6749 §3.1.2.3 / RFC 9700 §4.1.3: exact string comparison.
        ({"redirect_uri": SPA_REDIRECT + "/"}, "invalid_request", "redirect_uri"),
        ({"redirect_uri": SPA_REDIRECT.upper()}, "invalid_request", "redirect_uri"),
        ({"redirect_uri": SPA_REDIRECT + "?a=b"}, "invalid_request", "redirect_uri"),
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request", "redirect_uri"),
        # PKCE: required for public clients and by default; plain refused; S256 syntax.
        ({"code_challenge": None}, "invalid_request", "PKCE required"),
        ({"code_challenge_method": "plain"}, "invalid_request", "method 'plain'"),
        ({"code_challenge_method": "s256"}, "invalid_request", "method"),
        ({"code_challenge": RFC7636_CHALLENGE[:-1]}, "invalid_request", "challenge"),
        ({"code_challenge": RFC7636_CHALLENGE + "A"}, "invalid_request", "challenge"),
        ({"code_challenge": "+" * 43}, "invalid_request", "challenge"),
        # Scope: allowed set and RFC 6749 §3.3 syntax.
        ({"scope": "openid admin"}, "invalid_scope", "not allowed"),
        ({"scope": 'openid "x"'}, "invalid_scope", "syntax"),
        ({"scope": ("openid", "a b")}, "invalid_scope", "syntax"),
        # RFC 8707: resources the client may target, absolute, no fragment.
        ({"resource": ["https://api.example.com"]}, "invalid_target", "not allowed"),
        ({"resource": ["/relative"]}, "invalid_target", "absolute"),
        # OIDC: nonce bounded, claims an object of objects.
        ({"nonce": ""}, "invalid_request", "nonce"),
        ({"nonce": "n" * (MAX_NONCE_LENGTH + 1)}, "invalid_request", "nonce"),
        ({"claims": {"id_token": ["email"]}}, "invalid_request", "claims.id_token"),
        ({"claims": "email"}, "invalid_request", "claims not an object"),
        ({"claims": {"id_token": {"email": object()}}}, "invalid_request", "claims not JSON"),
    ],
)
async def test_bad_requests(
    config: Config, clock: FakeClock, overrides: dict[str, Any], error: str, detail: str
) -> None:
    with pytest.raises(OAuthError) as exc:
        await code_for(config, clock, **overrides)
    assert exc.value.error == error
    assert detail in exc.value.detail
    store = config.backend
    assert isinstance(store, MemoryStore)
    assert not store._codes  # nothing stored


async def test_client_without_the_grant_is_unauthorized(make_config: Callable[..., Config], clock: FakeClock) -> None:
    clients = tuple(
        msgspec.structs.replace(c, grant_types=("refresh_token",)) if c.client_id == "oauth-app" else c
        for c in authcode_clients()
    )
    config = make_config(clients=clients)
    with pytest.raises(OAuthError) as exc:
        await code_for(config, clock, client_id="oauth-app", scope="read")
    assert exc.value.error == "unauthorized_client"


async def test_client_error_comes_before_anything_redirectable(config: Config, clock: FakeClock) -> None:
    # RFC 6749 §4.1.2.1: a bad redirect_uri must be reported (not redirected) even when
    # the rest of the request is bad too.
    with pytest.raises(OAuthError) as exc:
        await code_for(config, clock, redirect_uri="https://evil.example/cb", scope="admin", code_challenge=None)
    assert "redirect_uri" in exc.value.detail


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"subject": ""}, "subject"),
        ({"auth_time": 1_800_000_000_000}, "auth_time"),  # milliseconds, the usual mistake
        ({"auth_time": 0}, "auth_time"),
        ({"auth_time": True}, "auth_time"),
        ({"amr": "pwd"}, "amr"),
        ({"amr": ["pwd", ""]}, "amr"),
    ],
)
async def test_host_programming_errors_raise_value_error(
    config: Config, clock: FakeClock, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await code_for(config, clock, **overrides)


async def test_hook_loaded_clients_are_used(make_config: Callable[..., Config], clock: FakeClock) -> None:
    dynamic = Client(
        client_id="dyn", token_endpoint_auth_method="none", redirect_uris=(SPA_REDIRECT,), scope=("openid",)
    )

    class DynamicClients(Hooks):
        async def load_client(self, config: Config, client_id: str) -> Client | None:
            return dynamic if client_id == "dyn" else None

    config = make_config(hooks=DynamicClients())
    record = await stored(config, await code_for(config, clock, client_id="dyn", scope="openid"))
    assert record.client_id == "dyn"


# RFC 6749 §4.1.2.1's codes.
AUTHORIZATION_ERRORS = {"invalid_request", "unauthorized_client", "invalid_scope", "invalid_target"}
CLAIMS = st.dictionaries(
    st.sampled_from(["id_token", "userinfo", "x"]),
    st.one_of(
        st.text(max_size=5),
        st.dictionaries(
            st.text(max_size=6),
            st.one_of(
                st.none(),
                st.text(max_size=5),
                st.dictionaries(st.sampled_from(["essential", "value", "values"]), st.one_of(st.booleans(), st.text())),
            ),
            max_size=2,
        ),
    ),
    max_size=2,
)


def mostly(valid: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` three times in four: requests mostly one mistake away from being accepted."""
    return st.one_of(st.just(valid), st.just(valid), st.just(valid), other)


@st.composite
def authorization_requests(draw: st.DrawFn) -> dict[str, Any]:
    client_id = draw(st.sampled_from(["spa", "spa", "web", "legacy", "oauth-app", "svc", "nobody"]))
    registered = WEB_REDIRECT if client_id in ("web", "legacy") else SPA_REDIRECT
    wrong_uri = st.sampled_from([SPA_REDIRECT, WEB_REDIRECT, registered + "/", registered.upper()])
    scope = st.one_of(
        st.none(),
        st.sampled_from(["openid offline_access", "read", "openid profile email", "admin", "openid\x00"]),
        st.text(max_size=30),
        st.lists(st.text(max_size=10), max_size=3).map(tuple),
    )
    return {
        "client_id": client_id,
        "redirect_uri": draw(mostly(registered, st.one_of(wrong_uri, st.text(max_size=30)))),
        "subject": "alice",
        "scope": draw(mostly("openid", scope)),
        "code_challenge": draw(mostly(RFC7636_CHALLENGE, st.one_of(st.none(), st.text(max_size=60)))),
        "code_challenge_method": draw(mostly("S256", st.sampled_from(["plain", "s256", ""]))),
        "nonce": draw(mostly(None, st.one_of(st.just(""), st.text(max_size=20), st.just("n" * 600)))),
        "resource": draw(mostly([], st.lists(st.one_of(st.sampled_from([API, "/relative"]), st.text(max_size=20))))),
        "claims": draw(mostly(None, CLAIMS)),
    }


def test_any_authorization_request_is_a_stored_code_or_an_oauth_error_that_stores_nothing(
    make_config: Callable[..., Config], clock: FakeClock
) -> None:
    config = make_config(clients=authcode_clients())
    store = config.backend
    assert isinstance(store, MemoryStore)
    with asyncio.Runner() as runner:

        @settings(max_examples=examples(300), deadline=None)
        @given(request=authorization_requests())
        def check(request: dict[str, Any]) -> None:
            before = dict(store._codes)
            refused: Exception | None = None
            try:
                code = runner.run(issue_code(config, auth_time=clock.now - 10, **request))
            except (OAuthError, ValueError) as exc:
                refused = exc
            if refused is not None:
                assert store._codes == before  # a refused request stores nothing
                if isinstance(refused, ValueError):
                    # A host's mistake, not the client's: consented scope tokens that are empty.
                    assert isinstance(request["scope"], tuple), refused
                    assert "" in request["scope"], refused
                    return
                assert isinstance(refused, OAuthError)
                assert refused.error in AUTHORIZATION_ERRORS, refused
                assert ERROR_DESCRIPTION.fullmatch(refused.description), refused
                return
            # Accepted: exactly one code more, bound to what was asked.
            assert set(store._codes) - set(before) == {token_hash(code)}
            record = store._codes[token_hash(code)]
            asked = (request["client_id"], request["redirect_uri"], request["nonce"])
            assert (record.client_id, record.redirect_uri, record.nonce) == asked
            assert record.code_challenge in (request["code_challenge"], None)
            # ...and never to more than the client is registered for.
            client = config.client(request["client_id"])
            assert client is not None
            assert set(record.scope) <= set(client.scope)
            assert set(record.resource) <= set(client.audiences)

        check()

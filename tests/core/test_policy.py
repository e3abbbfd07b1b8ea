"""``Policy``: a hook the host kept answers as ``Hooks`` does, without a call into it; a hook
the host overrides (subclass or instance) is always asked."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from attesto_asgi import Client, Config, Hooks, Issued, OAuthError, TokenRequest, issue, issue_code
from attesto_asgi.core.policy import Policy, overrides
from tests.core.grants.authcode_helpers import SPA_REDIRECT, pkce_pair
from tests.helpers import jwt_claims

# The hooks the core asks through Policy; the others it asks through Config.hooks.
ASKED_DIRECTLY = {"on_event", "authorize_exchange", "verify_external_token"}


def hook_names() -> set[str]:
    return {n for n, f in inspect.getmembers(Hooks, inspect.iscoroutinefunction) if not n.startswith("_")}


def test_every_hook_is_answered_by_policy_or_asked_directly() -> None:
    # A new hook on Hooks needs a decision: an asks_ flag (and a default at its call sites,
    # tested below against Hooks), or a direct call (and this set).
    answered = {n.removeprefix("asks_") for n in dir(Policy) if n.startswith("asks_")}
    assert answered | ASKED_DIRECTLY == hook_names()
    assert not answered & ASKED_DIRECTLY


def test_asks_flags_name_exactly_the_overridden_hooks(config: Config) -> None:
    kept = Policy(Kept(), config._clients)
    strict = Policy(Strict(), config._clients)
    for name in ("load_client", "authorize_scope", "access_token_claims", "id_token_claims", "issue_refresh_token"):
        assert getattr(kept, f"asks_{name}") is False
        assert getattr(strict, f"asks_{name}") is False
    assert kept.asks_subject_active is False
    assert strict.asks_subject_active is True
    assert kept.registered_client("svc") is config.client("svc")
    assert kept.registered_client("nobody") is None


class Kept(Hooks):
    """Overrides nothing."""


class Strict(Hooks):
    async def subject_active(self, subject: str) -> bool:
        return subject != "mallory"


def test_overrides_sees_subclass_methods_and_instance_functions_only() -> None:
    assert not any(overrides(Hooks(), n) for n in hook_names())
    assert not any(overrides(Kept(), n) for n in hook_names())
    assert [n for n in hook_names() if overrides(Strict(), n)] == ["subject_active"]
    hooks = Hooks()

    async def claims(client: Client, subject: str, scope: tuple[str, ...]) -> Mapping[str, Any]:
        return {"tenant": "t1"}

    hooks.access_token_claims = claims  # type: ignore[method-assign]
    assert [n for n in hook_names() if overrides(hooks, n)] == ["access_token_claims"]


SCOPES: list[tuple[str, ...] | None] = [
    None,
    (),
    ("read",),
    ("read", "write"),
    ("admin", "read"),
    ("openid",),
    ("openid", "offline_access"),
    ("offline_access",),
    ("profile", "openid"),
    ("nope",),
]


async def answer(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", await call()
    except OAuthError as exc:
        return "error", (exc.error, exc.status, exc.detail)


@pytest.mark.parametrize("requested", SCOPES)
@pytest.mark.parametrize("client_id", ["svc", "spa"])
async def test_a_kept_hook_answers_exactly_as_hooks_does(
    config: Config, client_id: str, requested: tuple[str, ...] | None
) -> None:
    client = config.client(client_id)
    assert client is not None
    hooks, policy = Hooks(), Policy(Hooks(), {c.client_id: c for c in config.clients})
    pairs: list[tuple[Callable[[], Any], Callable[[], Any]]] = [
        (lambda: hooks.load_client(config, client.client_id), lambda: policy.load_client(config, client.client_id)),
        (lambda: hooks.load_client(config, "unknown"), lambda: policy.load_client(config, "unknown")),
        (
            lambda: hooks.authorize_scope(client, requested, grant_type="client_credentials", subject="s"),
            lambda: policy.authorize_scope(client, requested, grant_type="client_credentials", subject="s"),
        ),
        (lambda: hooks.subject_active("alice"), lambda: policy.subject_active("alice")),
    ]
    for by_hooks, by_policy in pairs:
        assert await answer(by_policy) == await answer(by_hooks)


class Delegating(Hooks):
    """Overrides the hooks that have only a flag, each answering as ``Hooks`` does."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def access_token_claims(self, client: Client, subject: str, scope: tuple[str, ...]) -> Mapping[str, Any]:
        self.asked.append("access_token_claims")
        return await super().access_token_claims(client, subject, scope)

    async def id_token_claims(
        self, client: Client, subject: str, scope: tuple[str, ...], requested_claims: Mapping[str, Any] | None
    ) -> Mapping[str, Any]:
        self.asked.append("id_token_claims")
        return await super().id_token_claims(client, subject, scope, requested_claims)

    async def issue_refresh_token(self, client: Client, scope: tuple[str, ...]) -> bool:
        self.asked.append("issue_refresh_token")
        return await super().issue_refresh_token(client, scope)


# The claims that differ between two otherwise identical issues: random or derived from one.
PER_TOKEN = {"jti", "at_hash", "c_hash", "fid", "sid"}


async def redeem_and_rotate(config: Config, scope: str) -> tuple[Any, ...]:
    """What a code redemption and, where a refresh token came with it, a rotation return,
    less the per-token values: which fields, the access and ID token claims."""
    verifier, challenge = pkce_pair()
    spa = config.client("spa")
    assert spa is not None
    code = await issue_code(
        config,
        client_id="spa",
        redirect_uri=SPA_REDIRECT,
        subject="alice",
        scope=scope,
        code_challenge=challenge,
        auth_time=config.clock() - 5,
        nonce="n-1",
    )
    params = {"code": code, "redirect_uri": SPA_REDIRECT, "code_verifier": verifier}
    first = await issue(config, TokenRequest(client=spa, grant_type="authorization_code", params=params))
    assert isinstance(first, Issued), first
    answers: list[Any] = [sorted(first.body), stable(first.body["access_token"])]
    if "id_token" in first.body:
        answers.append(stable(first.body["id_token"]))
    if "refresh_token" in first.body:
        params = {"refresh_token": first.body["refresh_token"]}
        second = await issue(config, TokenRequest(client=spa, grant_type="refresh_token", params=params))
        assert isinstance(second, Issued), second
        answers += [sorted(second.body), stable(second.body["access_token"])]
    return tuple(answers)


def stable(token: str) -> dict[str, Any]:
    return {k: v for k, v in jwt_claims(token).items() if k not in PER_TOKEN}


@pytest.mark.parametrize("scope", ["openid", "openid offline_access", "offline_access", "openid profile", "profile"])
async def test_the_call_sites_of_a_kept_hook_answer_as_hooks_does(
    make_config: Callable[..., Config], scope: str
) -> None:
    # access_token_claims, id_token_claims and issue_refresh_token have no Policy method:
    # their defaults live at their call sites, which must give what Hooks gives.
    delegating = Delegating()
    kept, asked = make_config(), make_config(hooks=delegating)
    assert not kept._policy.asks_issue_refresh_token
    assert asked._policy.asks_issue_refresh_token
    assert await redeem_and_rotate(kept, scope) == await redeem_and_rotate(asked, scope)
    assert {"access_token_claims", "issue_refresh_token"} <= set(delegating.asked)
    assert ("id_token_claims" in delegating.asked) == ("openid" in scope.split())


class Recording(Hooks):
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def load_client(self, config: Config, client_id: str) -> Client | None:
        self.asked.append("load_client")
        return await super().load_client(config, client_id)

    async def authorize_scope(
        self, client: Client, requested: tuple[str, ...] | None, *, grant_type: str, subject: str | None = None
    ) -> tuple[str, ...]:
        self.asked.append("authorize_scope")
        return ("read",)

    async def access_token_claims(self, client: Client, subject: str, scope: tuple[str, ...]) -> Mapping[str, Any]:
        self.asked.append("access_token_claims")
        return {"tenant": "t1"}


async def test_an_overridden_hook_is_asked_on_every_request(make_config: Callable[..., Config]) -> None:
    hooks = Recording()
    config = make_config(hooks=hooks)
    svc = config.client("svc")
    assert svc is not None
    request = TokenRequest(client=svc, grant_type="client_credentials", params={"scope": "read write"})
    for _ in range(2):
        issued = await issue(config, request)
        assert issued.body["scope"] == "read"  # type: ignore[union-attr]
    assert hooks.asked == ["authorize_scope", "access_token_claims"] * 2
    assert await config._policy.load_client(config, "svc") is svc
    assert hooks.asked[-1] == "load_client"


async def test_a_function_set_on_the_instance_before_the_config_is_asked(
    make_config: Callable[..., Config],
) -> None:
    hooks = Hooks()
    seen: list[str] = []

    async def inactive(subject: str) -> bool:
        seen.append(subject)
        return False

    hooks.subject_active = inactive  # type: ignore[method-assign]
    config = make_config(hooks=hooks)
    assert await config._policy.subject_active("alice") is False
    assert seen == ["alice"]


def test_replacing_the_hooks_of_a_config_prepares_a_new_policy(make_config: Callable[..., Config]) -> None:
    import msgspec

    config = make_config()
    strict = msgspec.structs.replace(config, hooks=Strict())
    assert strict._policy.hooks is strict.hooks
    assert config._policy.hooks is config.hooks

"""``Policy``: a hook the host kept answers as ``Hooks`` does, without a call into it; a hook
the host overrides (subclass or instance) is always asked."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from attesto_asgi import Client, Config, Hooks, OAuthError, TokenRequest, issue
from attesto_asgi.core.policy import Policy, overrides

# The hooks the core asks through Policy; the others it asks through Config.hooks.
ASKED_DIRECTLY = {"on_event", "authorize_exchange", "verify_external_token"}


def hook_names() -> set[str]:
    return {n for n, f in inspect.getmembers(Hooks, inspect.iscoroutinefunction) if not n.startswith("_")}


def test_every_hook_is_answered_by_policy_or_asked_directly() -> None:
    # A new hook on Hooks needs a decision: a Policy method, or a direct call (and this set).
    answered = {n.removeprefix("asks_") for n in dir(Policy) if n.startswith("asks_")}
    assert answered | ASKED_DIRECTLY == hook_names()
    assert not answered & ASKED_DIRECTLY
    assert all(callable(getattr(Policy, n)) for n in answered)


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
    scope = requested or ()
    pairs: list[tuple[Callable[[], Any], Callable[[], Any]]] = [
        (lambda: hooks.load_client(config, client.client_id), lambda: policy.load_client(config, client.client_id)),
        (lambda: hooks.load_client(config, "unknown"), lambda: policy.load_client(config, "unknown")),
        (
            lambda: hooks.authorize_scope(client, requested, grant_type="client_credentials", subject="s"),
            lambda: policy.authorize_scope(client, requested, grant_type="client_credentials", subject="s"),
        ),
        (
            lambda: hooks.access_token_claims(client, "alice", scope),
            lambda: policy.access_token_claims(client, "alice", scope),
        ),
        (
            lambda: hooks.id_token_claims(client, "alice", scope, None),
            lambda: policy.id_token_claims(client, "alice", scope, None),
        ),
        (lambda: hooks.issue_refresh_token(client, scope), lambda: policy.issue_refresh_token(client, scope)),
        (lambda: hooks.subject_active("alice"), lambda: policy.subject_active("alice")),
    ]
    for by_hooks, by_policy in pairs:
        assert await answer(by_policy) == await answer(by_hooks)


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

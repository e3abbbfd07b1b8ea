"""The core called directly with plain TokenRequests: the checklist steps and their errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from attesto_asgi import Config, Denied, Issued, MemoryStore, StoreUnavailable, TokenRequest, issue
from tests.helpers import FakeClock


def request(config: Config, client_id: str, grant_type: str = "client_credentials", **params: Any) -> TokenRequest:
    client = config.client(client_id)
    assert client is not None
    resource = params.pop("resource", ())
    return TokenRequest(client=client, grant_type=grant_type, params=params, resource=resource)


async def denied(config: Config, req: TokenRequest) -> Denied:
    outcome = await issue(config, req)
    assert isinstance(outcome, Denied), outcome
    return outcome


async def test_unknown_grant_is_unsupported_grant_type(config: Config) -> None:
    out = await denied(config, request(config, "svc", grant_type="password"))
    assert out.error.error == "unsupported_grant_type"
    assert out.error.status == 400


async def test_grant_not_registered_for_client_is_unauthorized_client(config: Config) -> None:
    # "spa" has authorization_code/refresh_token only.
    out = await denied(config, request(config, "spa", grant_type="client_credentials"))
    assert out.error.error == "unauthorized_client"


async def test_public_client_cannot_use_client_credentials(make_config: Callable[..., Config]) -> None:
    from attesto_asgi import Client

    public = Client(client_id="pub", token_endpoint_auth_method="none", grant_types=("client_credentials",))
    config = make_config(clients=(public,))
    out = await denied(config, request(config, "pub"))
    assert out.error.error == "unauthorized_client"


async def test_denial_returns_one_token_denied_event_with_reason(config: Config) -> None:
    out = await denied(config, request(config, "svc", grant_type="password"))
    (event,) = out.events
    assert event.name == "token_denied"
    assert event.client_id == "svc"
    assert event.data["error"] == "unsupported_grant_type"
    assert "password" in event.data["reason"]


@pytest.mark.parametrize("scope", ["read  write", " read", "read ", 'read "x"', "read\\x", "réad"])
async def test_malformed_scope_is_invalid_scope(config: Config, scope: str) -> None:
    out = await denied(config, request(config, "svc", scope=scope))
    assert out.error.error == "invalid_scope"


@pytest.mark.parametrize("resource", ["api.example.com", "https://api.example.com/#frag", "/relative", "https://"])
async def test_malformed_resource_is_invalid_target(config: Config, resource: str) -> None:
    out = await denied(config, request(config, "svc", resource=(resource,)))
    assert out.error.error == "invalid_target"


async def test_store_unavailable_is_503_temporarily_unavailable(
    make_config: Callable[..., Config], clock: FakeClock
) -> None:
    class DownStore(MemoryStore):
        async def family_revoked(self, family_id: str) -> bool:
            raise StoreUnavailable("connection refused")

    # client_credentials asks the store nothing, so drive the failure through a hook that does.
    from attesto_asgi import Hooks

    class StoreHooks(Hooks):
        async def access_token_claims(self, client: Any, subject: str, scope: Any) -> dict[str, Any]:
            await config.backend.family_revoked("f")
            return {}

    config = make_config(store=DownStore(clock=clock, warn=False), hooks=StoreHooks())
    out = await denied(config, request(config, "svc"))
    assert out.error.error == "temporarily_unavailable"
    assert out.error.status == 503
    assert ("retry-after", "5") in out.error.headers


async def test_unexpected_failure_is_logged_server_error_without_detail(
    make_config: Callable[..., Config], caplog: pytest.LogCaptureFixture
) -> None:
    from attesto_asgi import Hooks

    class BrokenHooks(Hooks):
        async def access_token_claims(self, client: Any, subject: str, scope: Any) -> dict[str, Any]:
            raise RuntimeError("database password is hunter2")

    config = make_config(hooks=BrokenHooks())
    out = await denied(config, request(config, "svc"))
    assert out.error.error == "server_error"
    assert "hunter2" not in str(out.error.body())
    assert "unexpected failure" in caplog.text


async def test_issued_body_and_events_are_plain_data(config: Config) -> None:
    out = await issue(config, request(config, "svc"))
    assert isinstance(out, Issued)
    assert set(out.body) == {"access_token", "token_type", "expires_in", "scope"}
    (event,) = out.events
    assert event.name == "token_issued"
    assert out.body["access_token"] not in repr(event)

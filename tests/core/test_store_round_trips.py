"""How many times each grant asks the store, end to end through the middleware.

Each store call is a network round trip (Redis) or a read / fsync'd commit (SQLite), so the
count is the cost of a grant on a durable backend. These are the counts the guarantees need
and no more: a refresh is the read and the compare-and-set; a redemption takes the code and
stores the refresh token (put_refresh refuses a revoked family); client_credentials asks
nothing. Issuing an access token writes nothing: it carries its family (fid).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from attesto_asgi import AttestoMiddleware, Client, Config, MemoryStore
from attesto_asgi.core.grants.token_exchange import GRANT_TYPE as EXCHANGE
from attesto_asgi.core.verify import ACCESS_TOKEN_TYPE
from attesto_asgi.store import Store
from tests.core.grants.authcode_helpers import redeem, spa_code
from tests.core.grants.refresh_support import REFRESH_CLIENTS, post_refresh, seed_refresh
from tests.helpers import SVC_SECRET, FakeClock, http_client, jwt_claims, not_found_app, standard_clients

API = "https://api.example.com"
EXCHANGER_SECRET = "exchanger-secret-0123456789abcdefghijklmnopqrstuvwxyz"
# Every operation of the Store protocol (its coroutine methods).
STORE_OPERATIONS = tuple(
    name
    for name, member in inspect.getmembers(Store)
    if not name.startswith("_") and inspect.iscoroutinefunction(member)
)


class CountingStore(MemoryStore):
    """The memory store, keeping the name of every Store operation called, in order."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[str] = []


def _counted(name: str) -> Callable[..., Any]:
    async def operation(self: CountingStore, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(name)
        return await getattr(MemoryStore, name)(self, *args, **kwargs)

    return operation


for _name in STORE_OPERATIONS:
    setattr(CountingStore, _name, _counted(_name))


@pytest.fixture
def store(clock: FakeClock) -> CountingStore:
    return CountingStore(clock=clock, warn=False)


@pytest.fixture
def cfg(make_config: Callable[..., Config], store: CountingStore) -> Config:
    exchanger = Client(
        client_id="exchanger",
        client_secret=EXCHANGER_SECRET,
        grant_types=(EXCHANGE,),
        audiences=("spa", API),  # serves the spa's tokens, may target the API
    )
    return make_config(clients=(*standard_clients(), *REFRESH_CLIENTS, exchanger), store=store)


@pytest.fixture
async def http(cfg: Config) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(AttestoMiddleware(not_found_app, cfg)) as c:
        yield c


def test_every_store_operation_is_counted() -> None:
    assert {"get_refresh", "rotate_refresh", "take_code", "put_refresh", "access_token_revoked"} <= set(
        STORE_OPERATIONS
    )
    assert "record_access_token" not in STORE_OPERATIONS


async def test_client_credentials_asks_the_store_nothing(http: httpx.AsyncClient, store: CountingStore) -> None:
    r = await http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("svc", SVC_SECRET))
    assert r.status_code == 200, r.text
    assert store.calls == []


@pytest.mark.parametrize(
    ("scope", "calls"),
    [("openid offline_access", ["take_code", "put_refresh"]), ("openid", ["take_code"])],
)
async def test_a_redemption_takes_the_code_and_stores_the_refresh_token(
    cfg: Config, clock: FakeClock, http: httpx.AsyncClient, store: CountingStore, scope: str, calls: list[str]
) -> None:
    code = await spa_code(cfg, clock, scope=scope)
    store.calls.clear()
    r = await redeem(http, code)
    assert r.status_code == 200, r.text
    assert ("refresh_token" in r.json()) is ("offline_access" in scope)
    assert store.calls == calls


async def test_a_rotation_is_one_read_and_one_compare_and_set(
    cfg: Config, http: httpx.AsyncClient, store: CountingStore
) -> None:
    rt0 = await seed_refresh(cfg)
    store.calls.clear()
    r = await post_refresh(http, rt0)
    assert r.status_code == 200, r.text
    assert store.calls == ["get_refresh", "rotate_refresh"]


async def test_a_grace_retry_ends_with_the_family_check(
    make_config: Callable[..., Config], store: CountingStore
) -> None:
    cfg = make_config(clients=(*standard_clients(), *REFRESH_CLIENTS), store=store, refresh_grace=30)
    rt0 = await seed_refresh(cfg)
    async with http_client(AttestoMiddleware(not_found_app, cfg)) as http:
        first = await post_refresh(http, rt0)
        store.calls.clear()
        retry = await post_refresh(http, rt0)
    assert retry.json()["refresh_token"] == first.json()["refresh_token"]
    # No compare-and-set guards a retry: the token, its successor, then the family.
    assert store.calls == ["get_refresh", "get_refresh", "family_revoked"]


async def test_an_exchange_only_checks_the_subject_token(
    cfg: Config, clock: FakeClock, http: httpx.AsyncClient, store: CountingStore
) -> None:
    subject = (await redeem(http, await spa_code(cfg, clock, scope="openid"))).json()["access_token"]
    store.calls.clear()
    r = await http.post(
        "/oauth/token",
        data={
            "grant_type": EXCHANGE,
            "subject_token": subject,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": API,
        },
        auth=("exchanger", EXCHANGER_SECRET),
    )
    assert r.status_code == 200, r.text
    assert jwt_claims(r.json()["access_token"])["fid"] == jwt_claims(subject)["fid"]
    assert store.calls == ["access_token_revoked"]

"""The HTTP stage (benchmarks/stage_http.py): how it lays out its rounds (which scenarios
run back to back, in which order) and how a server's pool of bodies grows on demand. The
whole stage runs in test_smoke.py."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from benchmarks.common import Keys
from benchmarks.env import Env, ensure_wrk
from benchmarks.scenarios import Scenario
from benchmarks.stage_http import HTTPServer, comparison_groups, http_steps, round_order, top_up, wrk_once

FLOOR = Scenario("floor", "client_credentials", "memory")
SCENARIOS = [
    Scenario("attesto", "client_credentials", "memory"),
    Scenario("attesto", "client_credentials", "redis"),
    Scenario("attesto", "refresh_token", "memory"),
    Scenario("attesto", "refresh_token", "redis"),
    FLOOR,
    Scenario("aioauth", "refresh_token", "memory"),
]


def test_one_group_per_grant_each_with_the_floor() -> None:
    groups = dict(comparison_groups(SCENARIOS))
    assert list(groups) == ["client_credentials", "refresh_token"]
    assert groups["client_credentials"] == [*SCENARIOS[:2], FLOOR]
    assert groups["refresh_token"] == [*SCENARIOS[2:4], SCENARIOS[5], FLOOR]


def test_the_floors_code_redemption_joins_its_own_group_only() -> None:
    floor_code = Scenario("floor", "authorization_code", "memory")
    code = Scenario("attesto", "authorization_code", "memory")
    groups = dict(comparison_groups([*SCENARIOS, code, floor_code]))
    assert groups["authorization_code"] == [code, floor_code, FLOOR]
    assert floor_code not in groups["client_credentials"] + groups["refresh_token"]


def test_without_the_floor_the_groups_are_the_grants() -> None:
    groups = comparison_groups([s for s in SCENARIOS if s != FLOOR])
    assert [(g, len(m)) for g, m in groups] == [("client_credentials", 2), ("refresh_token", 3)]


def test_every_pair_goes_first_in_half_of_the_rounds() -> None:
    members = SCENARIOS[:5]
    orders = [round_order(members, i) for i in range(4)]
    for order in orders:
        assert sorted(order) == sorted(members)
    for a, b in itertools.combinations(members, 2):
        assert sum(o.index(a) < o.index(b) for o in orders) == 2


def test_steps_count_the_floor_once_per_group() -> None:
    # 2 groups: 3 + 4 runs per round.
    assert http_steps(SCENARIOS, ["uvicorn", "granian"], [1, 64], 3) == 2 * 2 * 3 * 7


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    e = Env()
    yield e
    e.close()


def test_a_server_mints_more_bodies_on_demand_and_wrk_sends_each_once(env: Env) -> None:
    sc = Scenario("attesto", "refresh_token", "memory")
    with HTTPServer("uvicorn", sc, env.store_url("memory"), Keys.generate(), env.dir, 3) as srv:
        srv.wait_ready(60)
        assert srv.available == 3
        srv.mint(5)
        assert srv.available == 8
        srv.used = 1  # the first body stays unsent
        # Seven valid refresh tokens, three of them minted after start-up. wrk takes the first
        # to check the script before it starts (never sent): six are sent and answered, then
        # the pool is exhausted and every further request is refused.
        run = wrk_once(ensure_wrk(), srv.port, srv.bodies, srv.offset, False, 2, 0.5, limit=7)
        assert run["ok"] == 6
        assert run["non2xx"] == run["requests"] - 6 > 0
        srv.used += run["requests"] + 2 + 1
        top_up([(srv, 20)])
        assert srv.available == 20
        top_up([(srv, 5)])  # enough already: nothing minted
        assert srv.available == 20

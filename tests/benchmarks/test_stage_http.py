"""How the HTTP stage (benchmarks/stage_http.py) lays out its rounds: which scenarios run
back to back, and in which order. The wrk runs themselves are in test_smoke.py."""

from __future__ import annotations

import itertools

from benchmarks.scenarios import Scenario
from benchmarks.stage_http import comparison_groups, http_steps, round_order

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

"""The in-process stage's round (benchmarks/stage_inprocess.py): short parts, interleaved.

Two real scenarios on the memory store (attesto's refresh rotation, which refuses a body
sent twice, and the floor) run one round; every call is logged with its scenario. Asserts
how the calls were scheduled and counted, never a speed.
"""

from __future__ import annotations

import itertools

from benchmarks.common import ASGIApp, Keys, Receive, Scope, Send
from benchmarks.scenarios import Scenario
from benchmarks.stage_inprocess import PART_SECONDS, _Running, interleaved_round


def _logged(unit: _Running, name: str, log: list[str]) -> None:
    """Log every call of ``unit``'s app and every mint of its bodies."""
    app: ASGIApp = unit.built.app
    mint = unit.built.mint

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        log.append(name)
        await app(scope, receive, send)

    async def minting(n: int) -> list[bytes]:
        log.append(f"mint {name}")
        return await mint(n)

    unit.built.app = wrapped
    unit.built.mint = minting


async def test_a_round_interleaves_short_parts_and_records_one_figure_per_unit() -> None:
    keys = Keys.generate()
    scenarios = [Scenario("attesto", "refresh_token", "memory"), Scenario("floor", "client_credentials", "memory")]
    units = [_Running(sc, sc.build("memory://", keys)) for sc in scenarios]
    names = [sc.name for sc in scenarios]
    log: list[str] = []
    for unit, name in zip(units, names, strict=True):
        _logged(unit, name, log)
        # As the stage does: a first rate sizes the round's bodies (long enough that a slow
        # first call does not leave the round short of them).
        await unit.warm_up(4 * PART_SECONDS)
    log.clear()
    orders: list[int] = []
    ticked: list[str] = []

    def order(i: int) -> list[_Running]:
        orders.append(i)
        return units if i % 2 == 0 else units[::-1]

    seconds = 4 * PART_SECONDS
    try:
        await interleaved_round(units, seconds, order, lambda u: ticked.append(u.scenario.name))
    finally:
        for unit in units:
            await unit.built.aclose()

    assert orders == [0, 1, 2, 3]
    # Bodies for the whole round first, nothing minted while a unit is measured.
    mints = [i for i, entry in enumerate(log) if entry.startswith("mint ")]
    calls = [entry for entry in log if not entry.startswith("mint ")]
    assert mints
    assert mints == list(range(len(mints)))
    # Four passes, each a part of each unit, in the pass's order (a b | b a | a b | b a):
    # the parts of one unit that meet at a pass boundary run back to back.
    a, b = names
    assert [name for name, _ in itertools.groupby(calls)] == [a, b, a, b, a]
    for unit, name in zip(units, names, strict=True):
        assert len(unit.rounds) == 1
        total = unit.total
        assert total.failed == 0, total.first_failure
        # The round's figure counts every call of the round's parts, over their summed time.
        assert total.ok == calls.count(name) > 0
        assert unit.bodies  # minted enough: no part ended early for want of bodies
        assert total.seconds >= seconds * 0.9
        assert unit.rounds[0] == total.ok / total.seconds
    assert sorted(ticked) == sorted(names)

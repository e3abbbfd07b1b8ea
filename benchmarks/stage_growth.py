"""Stage 3: growth. Refresh rotation, in-process, with 10^3 .. 10^6 live refresh tokens
already in the durable stores (SQLite, Redis).

For each backend, one store per size is filled (``benchmarks/fill.py``) and attesto's
refresh_token scenario is built on each, every backend's fills running at once; then,
backend by backend, the sizes are measured in interleaved rounds (``interleaved_round``:
short parts in passes, each pass in a rotated order), so that machine noise does not pass
for growth. A figure is the median round.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
from collections.abc import Callable
from typing import Any

from .attesto import make_config, put_refresh_tokens
from .common import Keys
from .env import Env
from .inprocess import Sample, latency_ms
from .scenarios import Scenario
from .stage_inprocess import _Running, interleaved_round

__all__ = ["run_growth"]


async def _fill(
    store: str,
    sizes: list[int],
    env: Env,
    keys: Keys,
    into: list[tuple[str, int, _Running]],
    tick: Callable[[str], None],
) -> None:
    """One store per size, each filled with its live tokens (appended to ``into`` as built,
    so the caller closes whatever was built if a fill fails)."""
    sc = Scenario("attesto", "refresh_token", store)
    for size in sorted(sizes):
        url = env.store_url(store)
        into.append((store, size, _Running(sc, sc.build(url, keys))))
        # A second config on the same store fills it: the filler tokens are never presented.
        filler = make_config(keys, url)
        try:
            await put_refresh_tokens(filler, size, batch=50_000)
        finally:
            await filler.backend.aclose()
        tick(f"{store}: {size:,} live tokens stored")


def _rotated(units: list[_Running], start: int, i: int) -> list[_Running]:
    """Round ``start``'s pass ``i``: the sizes in an order rotated by one more each time."""
    k = (start + i) % len(units)
    return units[k:] + units[:k]


async def run_growth(
    stores: list[str],
    sizes: list[int],
    env: Env,
    keys: Keys,
    *,
    seconds: float,
    rounds: int,
    tick: Callable[[str], None],
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    built: list[tuple[str, int, _Running]] = []
    try:
        # Every store is filled at once (the SQLite fill runs on a thread of its own, the
        # Redis fill mostly in redis-server and this loop); nothing is measured meanwhile.
        # A TaskGroup: a fill that fails cancels the others before their stores are closed.
        async with asyncio.TaskGroup() as fills:
            for store in stores:
                fills.create_task(_fill(store, sizes, env, keys, built, tick))
        for store in stores:
            running = sorted(((size, r) for s, size, r in built if s == store), key=lambda item: item[0])
            for _, r in running:
                await r.answer_first(keys)
                await r.warm_up(min(seconds, 0.3))
            units = [r for _, r in running]
            for n in range(rounds):
                await interleaved_round(units, seconds, functools.partial(_rotated, units, n))
            for size, r in running:
                total: Sample = r.total
                results.append(
                    {
                        "store": store,
                        "live": size,
                        "rate": statistics.median(r.rounds),
                        "rounds": [round(x, 1) for x in r.rounds],
                        "ok": total.ok,
                        "failed": total.failed,
                        "first_failure": total.first_failure,
                        **latency_ms(total.latencies_ns),
                    }
                )
                tick(f"{store}: measured at {size:,}")
    finally:
        for _, _, r in built:
            await r.built.aclose()
    return results

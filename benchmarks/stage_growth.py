"""Stage 3: growth. Refresh rotation, in-process, with 10^3 .. 10^6 live refresh tokens
already in the durable stores (SQLite, Redis).

One store per backend is filled step by step (the tokens of a smaller step stay in it), and
after each step attesto's refresh_token scenario is measured against it, a few slices.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from .attesto import make_config, put_refresh_tokens
from .common import Keys
from .env import Env
from .inprocess import Sample, measure, percentile
from .scenarios import Scenario
from .stage_inprocess import _Running, check_response

__all__ = ["run_growth"]


async def run_growth(
    stores: list[str],
    sizes: list[int],
    env: Env,
    keys: Keys,
    *,
    seconds: float,
    rounds: int,
    tick: Callable[[str], None],
    fill: Callable[[str, int], None] | None = None,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for store in stores:
        sc = Scenario("attesto", "refresh_token", store)
        url = env.store_url(store)
        built = sc.build(url, keys)
        # A second config on the same store fills it: the filler tokens are never presented.
        filler = make_config(keys, url)
        live = 0
        try:
            r = _Running(sc, built)
            for size in sorted(sizes):
                if size > live:
                    await put_refresh_tokens(filler, size - live, batch=50_000)
                    live = size
                    tick(f"{store}: {size:,} live tokens stored")
                await r.refill(0.1)
                from .inprocess import call

                status, content = await call(built.app, r.bodies.pop(0))
                check_response(status, content, keys, "refresh_token")
                total = Sample()
                rates = []
                for _ in range(rounds):
                    await r.refill(seconds)
                    sample, used = await measure(built.app, r.bodies, seconds=seconds, reusable=False)
                    del r.bodies[:used]
                    r.rate = sample.rate or r.rate
                    rates.append(sample.rate)
                    total.add(sample)
                tick(f"{store}: measured at {size:,}")
                results.append(
                    {
                        "store": store,
                        "live": size,
                        "rate": statistics.median(rates),
                        "rounds": [round(x, 1) for x in rates],
                        "ok": total.ok,
                        "failed": total.failed,
                        "first_failure": total.first_failure,
                        "p50_ms": percentile(total.latencies_ns, 0.5) / 1e6,
                        "p99_ms": percentile(total.latencies_ns, 0.99) / 1e6,
                    }
                )
        finally:
            await filler.backend.aclose()
            await built.aclose()
    return results

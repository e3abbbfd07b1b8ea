"""Stage 1: in-process, every scenario interleaved in the same process.

Every runnable scenario (attesto on each store, the floor, the peers) is built once; then
``rounds`` rounds each give every scenario one ``slice`` of requests, in a shuffled order, so
that noise from other work on the machine hits them alike, and any two scenarios have one
slice each in every round. A scenario's figure is its median round; a ratio between two
scenarios is the median of their per-round ratios (``benchmarks/report.py``). Latency
percentiles pool every round.
"""

from __future__ import annotations

import gc
import random
import statistics
from collections.abc import Callable
from typing import Any

from .common import Built, Keys, verify_jwt
from .env import Env
from .inprocess import Sample, call, measure, percentile, token_of
from .scenarios import Scenario

__all__ = ["check_response", "run_inprocess"]


def check_response(status: int, content: bytes, keys: Keys, grant: str) -> None:
    """A scenario's first answer must be a real token response signed with the shared key."""
    if status != 200:
        raise AssertionError(f"first request failed: {status} {content[:300]!r}")
    body = token_of(content)
    verify_jwt(body["access_token"], keys)
    if grant == "authorization_code+id_token":
        verify_jwt(body["id_token"], keys)
    if grant == "refresh_token" and "refresh_token" not in body:
        raise AssertionError("refresh_token grant answered without a new refresh token")


class _Running:
    def __init__(self, scenario: Scenario, built: Built) -> None:
        self.scenario = scenario
        self.built = built
        self.bodies: list[bytes] = []
        self.rate = 0.0
        self.rounds: list[float] = []
        self.total = Sample()

    async def refill(self, seconds: float) -> None:
        if self.built.reusable:
            if not self.bodies:
                self.bodies = await self.built.bodies(1)
            return
        need = int(max(self.rate, 500.0) * seconds * 1.5) + 200
        if len(self.bodies) < need:
            self.bodies.extend(await self.built.bodies(need - len(self.bodies)))

    async def slice(self, seconds: float, *, record: bool) -> None:
        await self.refill(seconds)
        # Everything alive now (every scenario's apps, stores and minted pools) is set aside
        # from garbage collection: a full collection walks every tracked object, and here
        # the process holds all the scenarios' state, which a real server would not.
        gc.collect()
        gc.freeze()
        sample, used = await measure(self.built.app, self.bodies, seconds=seconds, reusable=self.built.reusable)
        if not self.built.reusable:
            del self.bodies[:used]
        self.rate = sample.rate or self.rate
        if record:
            self.rounds.append(sample.rate)
            self.total.add(sample)


async def run_inprocess(
    scenarios: list[Scenario],
    env: Env,
    keys: Keys,
    *,
    seconds: float,
    rounds: int,
    tick: Callable[[str], None],
    warmup: float = 0.3,
) -> list[dict[str, Any]]:
    """Run every scenario; ``tick`` is called once per slice."""
    results: list[dict[str, Any]] = []
    running: list[_Running] = []
    try:
        for sc in scenarios:
            built = sc.build(env.store_url(sc.store), keys)
            r = _Running(sc, built)
            running.append(r)
            await r.refill(0.1)
            status, content = await call(built.app, r.bodies.pop(0) if not built.reusable else r.bodies[0])
            check_response(status, content, keys, sc.grant)
            await r.slice(warmup, record=False)  # warm-up and first rate estimate
        order = random.Random(7)  # an order, not a secret
        for _ in range(rounds):
            # A new order each round: no scenario always follows the same neighbour (a store's
            # background work, a collection triggered by the one before).
            for r in order.sample(running, len(running)):
                await r.slice(seconds, record=True)
                tick(r.scenario.name)
    finally:
        for r in running:
            await r.built.aclose()
    for r in running:
        lat = r.total.latencies_ns
        results.append(
            {
                "impl": r.scenario.impl,
                "grant": r.scenario.grant,
                "store": r.scenario.store,
                "rate": statistics.median(r.rounds),
                "rounds": [round(x, 1) for x in r.rounds],
                "ok": r.total.ok,
                "failed": r.total.failed,
                "first_failure": r.total.first_failure,
                "p50_ms": percentile(lat, 0.50) / 1e6,
                "p99_ms": percentile(lat, 0.99) / 1e6,
            }
        )
    return results

"""Stage 1: in-process, every scenario interleaved in the same process.

Every runnable scenario (attesto on each store, the floor, the peers) is built once, and
measured at each concurrency: one call at a time (c=1), and N tasks calling the app at once
on one event loop (c=N; the body pool shared, no code or refresh token used twice). Then
``rounds`` rounds each give every (scenario, concurrency) one ``slice`` of requests, in a
shuffled order, so that noise from other work on the machine hits them alike, and any two
have one slice each in every round. A figure is its median round; a ratio between two
scenarios at the same concurrency is the median of their per-round ratios
(``benchmarks/report.py``). Latency percentiles pool every round.
"""

from __future__ import annotations

import gc
import random
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from .common import Built, Keys, verify_jwt
from .env import Env
from .inprocess import Sample, call, measure, percentile, token_of
from .scenarios import Scenario

__all__ = ["answer_all", "check_response", "first_answered", "run_inprocess"]


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


async def first_answered(scenario: Scenario, built: Built, keys: Keys, n: int, *, minted: int = 0) -> list[bytes]:
    """Mint bodies for one first request and ``n`` more (``minted`` in all when larger), send
    the first and check its answer (``check_response``); the ``n`` bodies left to send."""
    bodies = await built.bodies(1 if built.reusable else max(minted, n + 1))
    if built.reusable:
        bodies = bodies * (n + 1)
    status, content = await call(built.app, bodies[0])
    check_response(status, content, keys, scenario.grant)
    return bodies[1 : n + 1]


async def answer_all(scenario: Scenario, built: Built, bodies: list[bytes]) -> None:
    """Send each body, one at a time; every answer must be a 200."""
    for body in bodies:
        status, content = await call(built.app, body)
        if status != 200:
            raise AssertionError(f"{scenario.name}: {status} {content[:200]!r}")


class _Running:
    def __init__(self, scenario: Scenario, built: Built, concurrency: int = 1) -> None:
        self.scenario = scenario
        self.built = built
        self.concurrency = concurrency
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
        sample, used = await measure(
            self.built.app, self.bodies, seconds=seconds, reusable=self.built.reusable, concurrency=self.concurrency
        )
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
    concurrency: Sequence[int] = (1,),
) -> list[dict[str, Any]]:
    """Run every scenario at every concurrency; ``tick`` is called once per slice."""
    results: list[dict[str, Any]] = []
    running: list[_Running] = []
    built_apps: list[Built] = []
    try:
        for sc in scenarios:
            built = sc.build(env.store_url(sc.store), keys)
            built_apps.append(built)
            # One app and store per scenario; each concurrency has its own bodies.
            units = [_Running(sc, built, c) for c in concurrency]
            first = units[0]
            await first.refill(0.1)
            status, content = await call(built.app, first.bodies.pop(0) if not built.reusable else first.bodies[0])
            check_response(status, content, keys, sc.grant)
            for r in units:
                running.append(r)
                await r.slice(warmup, record=False)  # warm-up and first rate estimate
        order = random.Random(7)  # an order, not a secret
        for _ in range(rounds):
            # A new order each round: no scenario always follows the same neighbour (a store's
            # background work, a collection triggered by the one before).
            for r in order.sample(running, len(running)):
                await r.slice(seconds, record=True)
                tick(f"{r.scenario.name} c={r.concurrency}")
    finally:
        for built in built_apps:
            await built.aclose()
    for r in running:
        lat = r.total.latencies_ns
        results.append(
            {
                "impl": r.scenario.impl,
                "grant": r.scenario.grant,
                "store": r.scenario.store,
                "concurrency": r.concurrency,
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

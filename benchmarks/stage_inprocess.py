"""Stage 1: in-process, every scenario interleaved in the same process.

Every runnable scenario (attesto on each store, the floor, the peers) is built once, and
measured at each concurrency: one call at a time (c=1), and N tasks calling the app at once
on one event loop (c=N; the body pool shared, no code or refresh token used twice). Then
``rounds`` rounds each give every (scenario, concurrency) ``seconds`` of requests, cut into
parts of about ``PART_SECONDS`` that run in passes, every pass in a new shuffled order
(``interleaved_round``). A round's figure for a scenario is its requests over its time in
all the round's parts, so any two scenarios are measured across the same stretch of the
round, and noise that lasts longer than a part (a neighbour VM, a frequency change) hits
them alike. A figure is its median round; a ratio between two scenarios at the same
concurrency is the median of their per-round ratios (``benchmarks/report.py``). Latency
percentiles pool every round.
"""

from __future__ import annotations

import gc
import random
import statistics
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from .common import Built, Keys, verify_jwt
from .env import Env
from .inprocess import Sample, call, latency_ms, measure, token_of
from .scenarios import Scenario

__all__ = ["PART_SECONDS", "answer_all", "check_response", "first_answered", "interleaved_round", "run_inprocess"]

# How long one part of a round runs. Noise on these VMs moves figures by tens of percent
# over a few seconds: with one 0.3 s slice per scenario a round, two scenarios measured
# seconds apart differed by up to 2x in the same round. Parts this short spread every
# scenario over the whole round; long enough for hundreds of calls, and for c=64 to ramp.
PART_SECONDS: Final = 0.05


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
        # Twice the fastest rate seen so far: a first rate taken while caches were cold can be
        # well under the round's (a part left without bodies would end early).
        need = int(max(self.rate, 500.0) * seconds * 2) + 200
        if len(self.bodies) < need:
            self.bodies.extend(await self.built.bodies(need - len(self.bodies)))

    async def part(self, seconds: float) -> Sample:
        """Requests for ``seconds`` from the bodies already minted; the used ones are dropped."""
        sample, used = await measure(
            self.built.app, self.bodies, seconds=seconds, reusable=self.built.reusable, concurrency=self.concurrency
        )
        if not self.built.reusable:
            del self.bodies[:used]
        self.rate = max(self.rate, sample.rate)
        return sample

    def record(self, sample: Sample) -> None:
        self.rounds.append(sample.rate)
        self.total.add(sample)

    async def answer_first(self, keys: Keys) -> None:
        """Mint, send one body and check its answer (``check_response``)."""
        await self.refill(0.1)
        body = self.bodies[0] if self.built.reusable else self.bodies.pop(0)
        status, content = await call(self.built.app, body)
        check_response(status, content, keys, self.scenario.grant)

    async def warm_up(self, seconds: float) -> None:
        """Requests not recorded: warm caches, and a first rate for sizing the next refill."""
        await self.refill(seconds)
        _set_aside()
        await self.part(seconds)


def _set_aside() -> None:
    # Everything alive now (every scenario's apps, stores and minted pools) is set aside
    # from garbage collection: a full collection walks every tracked object, and here
    # the process holds all the scenarios' state, which a real server would not.
    gc.collect()
    gc.freeze()


async def interleaved_round(
    units: Sequence[_Running],
    seconds: float,
    order: Callable[[int], Sequence[_Running]],
    tick: Callable[[_Running], None] = lambda _: None,
) -> None:
    """One round: every unit gets ``seconds`` of requests, in parts of about ``PART_SECONDS``
    run in passes (``order(i)``: the units in pass i's order), and records the round's
    figure (its requests over its time in all its parts). Bodies for the whole round are
    minted first; nothing is minted while any unit is measured. ``tick`` follows each
    unit's last part."""
    passes = max(1, round(seconds / PART_SECONDS))
    for unit in units:
        await unit.refill(seconds)
    samples = {id(unit): Sample() for unit in units}
    for i in range(passes):
        _set_aside()
        for unit in order(i):
            samples[id(unit)].add(await unit.part(seconds / passes))
            if i == passes - 1:
                unit.record(samples[id(unit)])
                tick(unit)


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
    between_rounds: Callable[[], Awaitable[None]] | None = None,
) -> list[dict[str, Any]]:
    """Run every scenario at every concurrency; ``tick`` is called once per scenario and round.
    ``between_rounds`` runs after each round (a probe measured alongside, on this loop)."""
    results: list[dict[str, Any]] = []
    running: list[_Running] = []
    built_apps: list[Built] = []
    try:
        for sc in scenarios:
            built = sc.build(env.store_url(sc.store), keys)
            built_apps.append(built)
            # One app and store per scenario; each concurrency has its own bodies.
            units = [_Running(sc, built, c) for c in concurrency]
            await units[0].answer_first(keys)
            for r in units:
                running.append(r)
                await r.warm_up(warmup)
        shuffled = random.Random(7)  # an order, not a secret
        for _ in range(rounds):
            # A new order each pass: no scenario always follows the same neighbour (a store's
            # background work, a collection triggered by the one before).
            await interleaved_round(
                running,
                seconds,
                lambda _: shuffled.sample(running, len(running)),
                lambda r: tick(f"{r.scenario.name} c={r.concurrency}"),
            )
            if between_rounds is not None:
                await between_rounds()
    finally:
        for built in built_apps:
            await built.aclose()
    for r in running:
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
                **latency_ms(r.total.latencies_ns),
            }
        )
    return results

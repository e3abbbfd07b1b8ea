"""Stage 4 (opt-in, ``--stages instructions``): CPU instructions per request, under callgrind.

Tokens/s on a shared 2-core machine move with the neighbours; the number of instructions a
request executes does not. ``valgrind --tool=callgrind`` counts the user-space instructions
of a whole process, repeatably (the same count twice whatever else the machine does), so
each in-process scenario on the memory store runs twice under it, with ``small`` and with
``large`` requests after one warm-up request; the difference divided by ``large - small`` is
the cost of one request, with start-up and imports cancelled out. Both runs mint the same
``large + 1`` request bodies (codes, refresh tokens), so minting cancels out too: a run that
minted only the bodies it sends would add one mint to every request's count. Kernel time
(the ``getrandom`` system call, for one) is not counted: the figure is a complement to
tokens/s, not a replacement. Use it to judge a hot-path change to 1%, attesto against
attesto: valgrind's virtual CPU has no MULX/ADX, so OpenSSL's ES256 runs its slower
``mulq`` path under it and counts more than its native share of a request, which makes
ratios against the floor or a peer read kinder than tokens/s (benchmarks/README.md).

``python -m benchmarks.stage_instructions <impl> <grant> <n> <minted>`` is the measured process.
"""

from __future__ import annotations

import asyncio
import gc
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .build import check_build
from .common import Keys
from .env import ensure_apt_tool
from .scenarios import Scenario
from .stage_inprocess import answer_all, first_answered

__all__ = ["count", "run_instructions", "warm"]

_COLLECTED = re.compile(rb"Collected : (\d+)")


async def _serve(scenario: Scenario, n: int, minted: int) -> None:
    keys = Keys.generate()
    built = scenario.build("memory://", keys)
    bodies = await first_answered(scenario, built, keys, n, minted=minted)
    # As in the in-process stage: start-up state is set aside from garbage collection, so a
    # full collection's walk over it lands in neither count by chance.
    gc.collect()
    gc.freeze()
    await answer_all(scenario, built, bodies)
    await built.aclose()


def _measured(scenario: Scenario, n: int, minted: int, *, write_bytecode: bool = False) -> list[str]:
    # -B: neither counted run writes bytecode, so both see the same compiled modules on disk.
    python = [sys.executable] if write_bytecode else [sys.executable, "-B"]
    return [*python, "-m", "benchmarks.stage_instructions", scenario.impl, scenario.grant, str(n), str(minted)]


def warm(scenario: Scenario) -> None:
    """One native run first: it writes every module's bytecode, so the two counted runs load
    the same files (a run that compiled a module would count the compiler), and it proves
    the scenario answers before valgrind spends a minute on it."""
    done = subprocess.run(_measured(scenario, 1, 2, write_bytecode=True), capture_output=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{scenario.name} failed: {done.stderr[-600:].decode(errors='replace')}")


def count(valgrind: str, scenario: Scenario, n: int, minted: int) -> int:
    """Instructions of one whole process that mints ``minted`` request bodies and serves
    ``n`` requests (after one warm-up request)."""
    cmd = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *_measured(scenario, n, minted)]
    done = subprocess.run(cmd, capture_output=True, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode or found is None:
        raise RuntimeError(f"{scenario.name} under callgrind failed: {done.stderr[-600:].decode(errors='replace')}")
    return int(found.group(1))


def run_instructions(
    scenarios: list[Scenario], *, small: int, large: int, tick: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Per-request instructions of every in-process scenario on the memory store."""
    valgrind = ensure_apt_tool("valgrind", "valgrind")
    chosen = [sc for sc in scenarios if sc.store == "memory"]
    for sc in chosen:
        warm(sc)
    jobs = [(sc, n) for sc in chosen for n in (small, large)]

    def one(job: tuple[Scenario, int]) -> int:
        sc, n = job
        total = count(valgrind, sc, n, large + 1)
        tick(f"{sc.name} n={n}")
        return total

    with ThreadPoolExecutor(max_workers=2) as pool:  # one valgrind per core
        totals = list(pool.map(one, jobs))
    out = []
    for i, sc in enumerate(chosen):
        few, many = totals[2 * i], totals[2 * i + 1]
        out.append(
            {
                "impl": sc.impl,
                "grant": sc.grant,
                "store": sc.store,
                "instructions": round((many - few) / (large - small)),
                "requests": [small, large],
                "minted": large + 1,
            }
        )
    return out


def main(argv: list[str]) -> None:
    impl, grant, n, minted = argv
    check_build()
    asyncio.run(_serve(Scenario(impl, grant, "memory"), int(n), int(minted)))


if __name__ == "__main__":
    main(sys.argv[1:])

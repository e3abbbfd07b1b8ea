"""``python -m benchmarks.profiling``: where one in-process scenario spends its time, by pyinstrument.

The scenario's app is built and its request bodies minted first (not profiled); then
``--requests`` requests are sent one at a time, in-process as the in-process stage sends
them, under pyinstrument's sampling profiler, and the call tree is written as text (and,
with ``--html``, as pyinstrument's HTML page) to ``<out>/<impl>-<grant>-<store>.txt``.

A sampling profiler shows where the time goes; it does not judge a change (for that, count
instructions: ``--stages instructions``). Samples every millisecond by default.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from pyinstrument import Profiler

from .common import GRANTS, IMPLS, STORES, Keys
from .env import Env
from .scenarios import Scenario
from .stage_inprocess import answer_all, first_answered

__all__ = ["main", "profile"]

_HERE = Path(__file__).resolve().parent


async def _profiled(scenario: Scenario, store_url: str, requests: int, interval: float) -> Profiler:
    keys = Keys.generate()
    built = scenario.build(store_url, keys)
    try:
        bodies = await first_answered(scenario, built, keys, requests)
        profiler = Profiler(interval=interval, async_mode="disabled")
        profiler.start()
        try:
            await answer_all(scenario, built, bodies)
        finally:
            profiler.stop()
        return profiler
    finally:
        await built.aclose()


def profile(
    scenario: Scenario, env: Env, out: Path, *, requests: int, interval: float = 0.001, html: bool = False
) -> Path:
    """Profile ``requests`` in-process requests of ``scenario``; the text report's path."""
    reason = scenario.skip_reason()
    if reason is not None:
        raise SystemExit(f"{scenario.name} cannot run here: {reason}")
    profiler = asyncio.run(_profiled(scenario, env.store_url(scenario.store), requests, interval))
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{scenario.impl}-{scenario.grant}-{scenario.store}"
    text = stem.with_suffix(".txt")
    text.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    if html:
        stem.with_suffix(".html").write_text(profiler.output_html())
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profiling", description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", default="attesto", choices=IMPLS)
    p.add_argument("--grant", default="authorization_code", choices=GRANTS)
    p.add_argument("--store", default="memory", choices=STORES)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--interval", type=float, default=0.001, help="seconds between samples")
    p.add_argument("--out", type=Path, default=_HERE / "results" / "profiles")
    p.add_argument("--html", action="store_true", help="also write pyinstrument's HTML page")
    args = p.parse_args(argv)
    env = Env()
    try:
        path = profile(
            Scenario(args.impl, args.grant, args.store),
            env,
            args.out,
            requests=args.requests,
            interval=args.interval,
            html=args.html,
        )
    finally:
        env.close()
    print(path.read_text())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""``python -m benchmarks``: the whole suite, one command, with a progress bar.

Stages: in-process (every grant x store, interleaved with the floor and the peers, one call
at a time and from several tasks at once), over HTTP (uvicorn and granian, one worker, wrk
at several concurrencies, paired rounds), and growth (live refresh tokens already in the
SQLite and Redis stores). Writes
``benchmarks/results/<date>-<host>.json``, a Markdown table beside it, PNG plots, and the
table into ``benchmarks/README.md``. ``--quick`` runs everything briefly (a smoke run).

Only the full run (every default stage, implementation, grant, store and server, of the
wheel, not ``--quick``) writes those names and the README: any other run is written as
``<date>-<host>-partial`` (``-quick``), or under ``results/instructions/`` when it only
counts instructions, so a subset run never replaces the day's full results.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .build import loaded_build
from .common import GRANTS, IMPLS, STORES, Keys
from .env import Env, ensure_store_backends, ensure_wrk, machine
from .report import update_readme, write
from .rotation_cap import RedisProbes
from .scenarios import Scenario, all_scenarios
from .stage_growth import run_growth
from .stage_http import http_steps, run_http
from .stage_inprocess import run_inprocess
from .stage_instructions import run_instructions

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
DEFAULT_STAGES = ("inprocess", "http", "growth")
SERVERS = ("uvicorn", "granian")


def _csv(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short slices everywhere (about 4 minutes): a smoke run")
    p.add_argument("--impl", type=_csv, default=list(IMPLS), help=f"comma list of {','.join(IMPLS)}")
    p.add_argument("--grant", type=_csv, default=list(GRANTS), help=f"comma list of {','.join(GRANTS)}")
    p.add_argument("--store", type=_csv, default=list(STORES), help=f"comma list of {','.join(STORES)}")
    p.add_argument(
        "--stages",
        type=_csv,
        default=list(DEFAULT_STAGES),
        help="inprocess,http,growth (the default) and instructions (opt-in: callgrind, 5-10 minutes)",
    )
    p.add_argument("--servers", type=_csv, default=list(SERVERS))
    p.add_argument("--concurrency", type=lambda v: [int(x) for x in _csv(v)], default=[1, 16, 64, 256])
    p.add_argument(
        "--inprocess-concurrency",
        type=lambda v: [int(x) for x in _csv(v)],
        default=[1, 64],
        help="in-process: tasks calling the app at once on one event loop, each measured (default 1,64)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="in-process time per scenario and round, run in 0.05 s parts (default 0.3)",
    )
    p.add_argument("--rounds", type=int, default=None, help="in-process rounds (default 8; quick 2)")
    p.add_argument("--wrk-seconds", type=float, default=0.5, help="one wrk run (default 0.5)")
    p.add_argument(
        "--http-rounds",
        type=int,
        default=None,
        help="rounds per server and concurrency, each a wrk run per scenario of a grant and the floor, "
        "back to back (ratios are medians of per-round ratios; default 4, quick 1)",
    )
    p.add_argument(
        "--growth",
        type=lambda v: [int(x) for x in _csv(v)],
        default=None,
        help="live refresh tokens (default 1000,100000,1000000; quick 1000,10000)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where results are written (default results/, or results/instructions/ for --stages instructions)",
    )
    p.add_argument("--no-readme", action="store_true", help="do not update benchmarks/README.md (the full run only)")
    p.add_argument(
        "--pure",
        action="store_true",
        help="measure the checkout's .py sources, not the mypyc-compiled wheel pip installs (benchmarks/build.py)",
    )
    args = p.parse_args(argv)
    q = args.quick
    args.seconds = args.seconds or 0.3
    args.rounds = args.rounds or (2 if q else 8)
    args.http_rounds = args.http_rounds or (1 if q else 4)
    args.growth = args.growth or ([1000, 10000] if q else [1000, 100_000, 1_000_000])
    only_instructions = args.stages == ["instructions"]
    args.out = args.out or (HERE / "results" / "instructions" if only_instructions else HERE / "results")
    args.full = full_run(args)
    args.suffix = "" if args.full or only_instructions else "-quick" if q else "-partial"
    return args


def full_run(args: argparse.Namespace) -> bool:
    """The run the README's table and ``results/<date>-<host>.*`` stand for."""
    return (
        not args.quick
        and not args.pure
        and set(DEFAULT_STAGES) <= set(args.stages)
        and set(IMPLS) <= set(args.impl)
        and set(GRANTS) <= set(args.grant)
        and set(STORES) <= set(args.store)
        and set(SERVERS) <= set(args.servers)
    )


def select(args: argparse.Namespace) -> tuple[list[Scenario], list[dict[str, str]]]:
    chosen, skipped = [], []
    for sc in all_scenarios():
        if sc.impl not in args.impl or sc.grant not in args.grant or sc.store not in args.store:
            continue
        why = sc.skip_reason()
        if why is None:
            chosen.append(sc)
        else:
            skipped.append({"scenario": sc.name, "reason": why})
    return chosen, skipped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    console = Console(stderr=True)
    ensure_store_backends([s for s in args.store if s != "memory"])
    scenarios, skipped = select(args)
    for s in skipped:
        console.print(f"[yellow]skipped[/] {s['scenario']}: {s['reason']}")
    if not scenarios:
        console.print("[red]nothing to run[/]")
        return 1
    started = time.time()
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "build": loaded_build(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "skipped": skipped,
        "inprocess": [],
        "http": [],
        "growth": [],
        "instructions": [],
    }
    keys = Keys.generate()
    env = Env()
    wrk = ensure_wrk() if "http" in args.stages else ""
    growth_stores = (
        [s for s in ("sqlite", "redis") if s in args.store and Scenario("attesto", "refresh_token", s) in scenarios]
        if "growth" in args.stages
        else []
    )
    if "growth" in args.stages and not growth_stores:
        results["skipped"].append({"scenario": "growth", "reason": "no durable store with refresh_token here"})
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[now]}"),
            console=console,
        ) as progress:
            tasks = {}
            if "inprocess" in args.stages:
                total = len(scenarios) * len(args.inprocess_concurrency) * args.rounds
                tasks["inprocess"] = progress.add_task("in-process", total=total, now="")
            if "http" in args.stages:
                total = http_steps(scenarios, args.servers, args.concurrency, args.http_rounds)
                tasks["http"] = progress.add_task("over HTTP", total=total, now="")
            if growth_stores:
                tasks["growth"] = progress.add_task("growth", total=len(growth_stores) * len(args.growth) * 2, now="")
            if "instructions" in args.stages:
                in_memory = sum(sc.store == "memory" for sc in scenarios)
                tasks["instructions"] = progress.add_task("instructions", total=2 * in_memory, now="")

            stage_seconds: dict[str, float] = {}
            results["stage_seconds"] = stage_seconds

            def ticker(stage: str):  # type: ignore[no-untyped-def]
                began = time.monotonic()
                if not console.is_terminal:  # no live bar in a log: one line per stage
                    console.print(f"{stage}: {progress.tasks[tasks[stage]].total} steps")

                def tick(name: str) -> None:
                    progress.update(tasks[stage], advance=1, now=name)
                    stage_seconds[stage] = round(time.monotonic() - began, 1)

                return tick

            if "inprocess" in args.stages:
                # With Redis in the run, after every round: bare round trips to it, and
                # rotations on the memory store behind two of them (what one call at a time
                # reaches at best through a store that waits for two) and behind one (through
                # a store that waited for one), beside what ours takes.
                with_redis = any(sc.store == "redis" for sc in scenarios)
                probes = RedisProbes(keys, "127.0.0.1", env.redis.port) if with_redis else None
                results["inprocess"] = asyncio.run(
                    run_inprocess(
                        scenarios,
                        env,
                        keys,
                        seconds=args.seconds,
                        rounds=args.rounds,
                        concurrency=args.inprocess_concurrency,
                        tick=ticker("inprocess"),
                        between_rounds=probes.sample if probes else None,
                    )
                )
                if probes is not None:
                    results.update(probes.results())
            if "http" in args.stages:
                measured: dict[tuple[str, str, str], float] = {}
                for r in results["inprocess"]:  # the best concurrency's figure
                    key = (r["impl"], r["grant"], r["store"])
                    measured[key] = max(measured.get(key, 0.0), r["rate"])

                def expected(sc: Scenario) -> float:
                    return measured.get((sc.impl, sc.grant, sc.store), 4000.0)

                results["http"] = run_http(
                    scenarios,
                    env,
                    keys,
                    wrk,
                    servers=args.servers,
                    concurrency=args.concurrency,
                    seconds=args.wrk_seconds,
                    rounds=args.http_rounds,
                    expected_rate=expected,
                    tick=ticker("http"),
                )
            if growth_stores:
                results["growth"] = asyncio.run(
                    run_growth(
                        growth_stores,
                        args.growth,
                        env,
                        keys,
                        seconds=args.seconds,
                        rounds=args.rounds,
                        tick=ticker("growth"),
                    )
                )
            if "instructions" in args.stages:
                small, large = (20, 120) if args.quick else (200, 1200)
                results["instructions"] = run_instructions(
                    scenarios, small=small, large=large, tick=ticker("instructions")
                )
    finally:
        env.close()
    results["seconds"] = round(time.time() - started, 1)
    stem = f"{dt.date.today().isoformat()}-{results['machine']['host']}{args.suffix}"
    json_path, md_path, pngs = write(results, args.out, stem)
    if args.full and not args.no_readme:
        update_readme(HERE / "README.md", results, md_path.name, pngs)
    console.print(md_path.read_text())
    console.print(f"wrote {json_path}, {md_path} and {len(pngs)} plots in {results['seconds']:.0f} s")
    missed = [t for t in results["targets"] if t["met"] is False]
    if missed:
        console.print(f"[yellow]{len(missed)} target(s) missed[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())

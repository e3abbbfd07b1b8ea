"""``python -m benchmarks``'s arguments: only the full run takes the day's results names and
the README table, so a subset run never replaces them."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.run import HERE, parse_args

RESULTS = HERE / "results"


def test_the_full_run_writes_the_days_results_and_the_readme() -> None:
    args = parse_args([])
    assert (args.full, args.suffix, args.out) == (True, "", RESULTS)


@pytest.mark.parametrize(
    "argv",
    [
        ["--stages", "inprocess"],
        ["--stages", "inprocess,http"],
        ["--grant", "client_credentials"],
        ["--store", "memory"],
        ["--impl", "attesto,floor"],
        ["--servers", "uvicorn"],
        ["--pure"],
    ],
)
def test_a_subset_or_the_sources_is_a_partial_run(argv: list[str]) -> None:
    args = parse_args(argv)
    assert (args.full, args.suffix, args.out) == (False, "-partial", RESULTS)


def test_a_quick_run_keeps_its_own_name() -> None:
    args = parse_args(["--quick"])
    assert (args.full, args.suffix) == (False, "-quick")


def test_instruction_counts_go_to_their_own_folder() -> None:
    args = parse_args(["--stages", "instructions", "--store", "memory"])
    assert (args.full, args.suffix, args.out) == (False, "", RESULTS / "instructions")


def test_the_full_run_with_instruction_counts_is_still_the_full_run() -> None:
    args = parse_args(["--stages", "inprocess,http,growth,instructions"])
    assert (args.full, args.suffix, args.out) == (True, "", RESULTS)


def test_an_explicit_out_is_kept(tmp_path: Path) -> None:
    args = parse_args(["--stages", "instructions", "--out", str(tmp_path)])
    assert args.out == tmp_path

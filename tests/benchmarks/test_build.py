"""``python -m benchmarks`` measures the compiled wheel (benchmarks/build.py), in its own
process and in every server it starts, and says so in its results; ``--pure`` measures the
sources. Asserts which build answered and that every request succeeded, never a speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.env import ensure_wrk

ROOT = Path(__file__).resolve().parent.parent.parent
BRIEF = [
    "--impl", "attesto,floor", "--grant", "client_credentials", "--store", "memory",
    "--rounds", "1", "--seconds", "0.05", "--inprocess-concurrency", "1", "--no-readme",
]  # fmt: skip


def _run(out: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *BRIEF, "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (results,) = out.glob("*.json")
    loaded: dict[str, object] = json.loads(results.read_text())
    return loaded


@pytest.mark.parametrize(("args", "build"), [((), "compiled"), (("--pure",), "pure")])
def test_the_run_measures_the_build_it_names(tmp_path: Path, args: tuple[str, ...], build: str) -> None:
    ensure_wrk()
    # Over HTTP too: each server checks at start-up that it loaded the build the run measures.
    results = _run(tmp_path, "--stages", "inprocess,http", "--servers", "uvicorn,granian", "--concurrency", "2",
                   "--http-rounds", "1", "--wrk-seconds", "0.5", *args)  # fmt: skip
    assert results["build"] == build
    rows = [*results["inprocess"], *results["http"]]  # type: ignore[misc]
    assert {(r["impl"], r.get("server", "inprocess")) for r in rows} == {
        (i, s) for i in ("attesto", "floor") for s in ("inprocess", "uvicorn", "granian")
    }  # fmt: skip
    assert all(r["failed" if "failed" in r else "errors"] == 0 for r in rows), rows
    md = next(tmp_path.glob("*.md")).read_text()
    assert ("compiled with mypyc (`hatch_build.py`); `--pure`" in md) == (build == "compiled")

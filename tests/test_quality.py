"""The code-quality gates run inside the suite, so the README's one test command runs them too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_check_is_clean() -> None:
    r = run("ruff", "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_is_clean() -> None:
    r = run("ruff", "format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_is_clean() -> None:
    # The library, its store backends, the examples and the benchmark harness.
    r = run(
        "mypy",
        "--strict",
        "attesto_asgi",
        "examples",
        "stores/sqlite/attesto_asgi_sqlite",
        "stores/redis/attesto_asgi_redis",
        "benchmarks",
    )
    assert r.returncode == 0, r.stdout + r.stderr

"""The store distributions pass the same gate as the core: ``mypy --strict``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "stores/sqlite/attesto_asgi_sqlite",
    "stores/redis/attesto_asgi_redis",
    "examples/custom_store/attesto_postgres_example",
)


def test_store_packages_pass_mypy_strict() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *PACKAGES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr

"""Headless Chromium for the end-to-end tests: Debian's ``chromium`` driven by Playwright
(``executable_path``; Playwright never downloads a browser here).

When the binary is missing, it is installed with apt-get (as root). When the browser still
cannot start: under CI (``CI=true``) the test fails; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "chromium_or_fail"]

CHROMIUM: Final = "/usr/bin/chromium"
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the browser test must run under CI: {reason}", pytrace=False)
    pytest.skip(f"headless Chromium unavailable: {reason}")


def _install_chromium() -> str | None:
    """apt-get install chromium; None on success, else why it failed."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and apt-get cannot install it here (not root, or no apt-get)"
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            return f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}"
    return None


def chromium_or_fail(playwright: Any) -> Any:
    """Chromium as a Playwright ``Browser``; Playwright gives each launch a fresh user-data-dir."""
    if not Path(CHROMIUM).exists():
        problem = _install_chromium()
        if problem:
            _unavailable(problem)
    try:
        return playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=60_000,
        )
    except Exception as exc:  # Playwright's Error: the binary exists but does not start
        _unavailable(f"{CHROMIUM} did not start: {exc}")
        raise

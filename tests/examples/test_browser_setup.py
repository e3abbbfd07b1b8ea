"""The browser test's setup policy: a Chromium that cannot start fails the test under CI
(``CI=true``) and is only skipped elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.examples import browser


@pytest.fixture
def broken_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\necho 'cannot start' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(browser, "CHROMIUM", str(fake))
    return fake


def test_a_browser_that_cannot_start_fails_under_ci(broken_chromium: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with sync_playwright() as p, pytest.raises(pytest.fail.Exception, match="must run under CI"):
        browser.chromium_or_fail(p)


def test_a_browser_that_cannot_start_is_skipped_elsewhere(
    broken_chromium: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with sync_playwright() as p, pytest.raises(pytest.skip.Exception, match="did not start"):
        browser.chromium_or_fail(p)


def test_a_missing_browser_is_installed_or_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not root (or no apt-get): the reason names what is missing, nothing is installed.
    monkeypatch.setattr(browser.os, "geteuid", lambda: 1000)
    problem = browser._install_chromium()
    assert problem is not None
    assert "cannot install" in problem

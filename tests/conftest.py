"""Shared fixtures: a controllable clock, a memory store with the standard clients, and an
httpx client speaking real HTTP semantics to the middleware through ``httpx.ASGITransport``."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import authlib.deprecate
import httpx
import pytest

from attesto_asgi import AttestoMiddleware, Config, MemoryStore
from tests.helpers import ISSUER, FakeClock, http_client, keyset, not_found_app, standard_clients

# authlib's import puts warnings.simplefilter("always", AuthlibDeprecationWarning) ahead of
# pytest's filterwarnings, so "error" and our ignores never saw its warnings: take it out.
_filters = cast("list[Any]", warnings.filters)  # a list at run time; typeshed says Sequence
_filters[:] = [f for f in _filters if f[2] is not authlib.deprecate.AuthlibDeprecationWarning]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_config(clock: FakeClock) -> Callable[..., Config]:
    def make(**overrides: Any) -> Config:
        options: dict[str, Any] = {
            "issuer": ISSUER,
            "keys": keyset("ES256"),
            "store": MemoryStore(clock=clock, warn=False),
            "clients": standard_clients(),
            "clock": clock,
        }
        options.update(overrides)
        return Config(**options)

    return make


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config()


@pytest.fixture
async def client(config: Config) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(AttestoMiddleware(not_found_app, config)) as c:
        yield c


def pytest_configure(config: pytest.Config) -> None:
    """A session told which build to test (tests/test_compiled_build.py) proves it has it."""
    import os

    if os.environ.get("ATTESTO_EXPECT_BUILD"):
        from benchmarks.build import check_build

        check_build()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest file first: the compiled-build run (a wheel build and a second pytest
    session, ~120 s on a slow VM) starts at once on one xdist worker while the others share
    the rest, instead of being taken last and run alone (pyproject.toml's ``--dist
    loadfile --no-loadscope-reorder`` keeps this order). A stable sort: nothing else moves."""
    items.sort(key=lambda item: item.path.name != "test_compiled_build.py")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skipped test is a failed test: a backend that cannot be tested is red."""
    import os

    if os.environ.get("CI", "").lower() != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        for report in skipped:
            print(f"\nCI: skipped test counts as a failure: {report.nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

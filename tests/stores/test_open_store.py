"""``open_store``: backends are found by entry point; a broken plugin never breaks the rest."""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, EntryPoints

import pytest

import attesto_asgi.store as store_module
from attesto_asgi import open_store
from attesto_asgi.memory import MemoryStore
from attesto_asgi.store import ENTRY_POINT_GROUP, installed_backends


def test_installed_distributions_register_their_schemes() -> None:
    # The real entry points of the installed distributions (core, sqlite, redis).
    assert {"memory", "sqlite", "redis", "rediss"} <= set(installed_backends())


async def test_memory_scheme() -> None:
    store = open_store("memory://")
    assert isinstance(store, MemoryStore)
    await store.aclose()


def test_unknown_scheme_names_the_installed_backends() -> None:
    with pytest.raises(ValueError, match="no store backend for scheme 'mongodb'") as info:
        open_store("mongodb://127.0.0.1/x")
    for name in ("memory", "redis", "rediss", "sqlite"):
        assert name in str(info.value)


def _fake_entry_points(*eps: EntryPoint) -> object:
    def entry_points(*, group: str) -> EntryPoints:
        assert group == ENTRY_POINT_GROUP
        return EntryPoints(eps)

    return entry_points


def _ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        store_module,
        "entry_points",
        _fake_entry_points(
            _ep("broken", "attesto_no_such_module_xyz:factory"),  # import fails
            _ep("missing", "attesto_asgi.memory:no_such_factory"),  # attribute missing
            _ep("notcallable", "attesto_asgi.store:ENTRY_POINT_GROUP"),  # a str, not a factory
            _ep("memory", "attesto_asgi.memory:open_memory_store"),
            _ep("memory", "attesto_no_such_module_xyz:shadow"),  # a later duplicate never wins
        ),
    )


@pytest.mark.usefixtures("plugins")
async def test_broken_plugins_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="attesto_asgi.store"):
        assert installed_backends() == ["memory"]
        store = open_store("memory://")
    assert isinstance(store, MemoryStore)
    await store.aclose()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for name in ("broken", "missing", "notcallable"):
        assert repr(name) in logged
    with pytest.raises(ValueError, match=r"installed: memory$"):
        open_store("broken://x")


def test_no_backend_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "entry_points", _fake_entry_points())
    with pytest.raises(ValueError, match="installed: none"):
        open_store("memory://")

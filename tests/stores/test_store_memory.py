"""The in-memory store against the conformance suite."""

from __future__ import annotations

import msgspec
import pytest

from attesto_asgi.memory import MemoryStore
from attesto_asgi.store import Store
from attesto_asgi.testing import StoreContract, StoreFactory
from attesto_asgi.testing.store_contract import ContractClock


class TestMemoryStore(StoreContract):
    # One process, nothing persisted: reopening cannot keep data (it is documented as such).
    durable = False

    @pytest.fixture
    def store_factory(self, clock: ContractClock) -> StoreFactory:
        # Instances cannot share state, so every "peer" is the same store.
        store = MemoryStore(clock=clock, warn=False)
        return lambda _clock: store

    async def dump_raw(self, store: Store) -> bytes:
        assert isinstance(store, MemoryStore)
        state = {k: v for k, v in vars(store).items() if k.startswith("_") and isinstance(v, dict)}
        return msgspec.json.encode({k: list(v.items()) for k, v in state.items()})

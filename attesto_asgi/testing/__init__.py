"""Test helpers shipped for backend authors (needs pytest and pytest-asyncio).

``StoreContract`` is the conformance suite every ``Store`` backend runs: subclass it in a
test module and provide the ``store_factory`` fixture and ``dump_raw``. See docs/store.md.
"""

from .store_contract import ContractClock, StoreContract, StoreFactory

__all__ = ["ContractClock", "StoreContract", "StoreFactory"]

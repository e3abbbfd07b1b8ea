"""The token, revocation and introspection endpoints under arbitrary requests, on the memory
store: every refusal is a precise RFC 6749 §5.2 error (never a 5xx), no request that carries
nothing ever issued changes stored state, and no credential sent comes back, in a response
body or in an event (tests/endpoint_properties.py; SQLite and Redis:
tests/stores/test_store_refusals.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from attesto_asgi import Config
from attesto_asgi.memory import MemoryStore
from tests.endpoint_properties import ENDPOINTS, memory_state, run_property
from tests.helpers import FakeClock


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_a_request_carrying_nothing_issued_is_answered_exactly_and_changes_nothing(
    make_config: Callable[..., Config], clock: FakeClock, endpoint: str
) -> None:
    run_property(make_config, clock, ENDPOINTS[endpoint], lambda: MemoryStore(clock=clock, warn=False), memory_state)

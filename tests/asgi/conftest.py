"""Fixtures of the revocation and introspection tests: the standard clients plus the family
clients (tests/families.py), hooks that record events, and an HTTP client to the middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from attesto_asgi import AttestoMiddleware, Config
from tests.families import FamilyHooks, family_clients
from tests.helpers import http_client, not_found_app, standard_clients


@pytest.fixture
def hooks() -> FamilyHooks:
    return FamilyHooks()


@pytest.fixture
def cfg(make_config: Callable[..., Config], hooks: FamilyHooks) -> Config:
    return make_config(clients=(*standard_clients(), *family_clients()), hooks=hooks)


@pytest.fixture
async def http(cfg: Config) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(AttestoMiddleware(not_found_app, cfg)) as c:
        yield c

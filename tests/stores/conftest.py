"""Fixtures for the store tests: private redis-servers (started here, stopped by pid)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from attesto_asgi_redis import RedisStore

from attesto_asgi._secrets import new_id
from tests.stores.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A one-node Redis Cluster owning every slot: it refuses any script or multi-key
    command whose keys are not in one hash slot, so the store's key layout is checked."""
    workdir = tmp_path_factory.mktemp("redis-cluster")
    server = RedisServer(workdir, extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))
    server.start()
    try:
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(server.port)]
        subprocess.run([*cli, "CLUSTER", "ADDSLOTSRANGE", "0", "16383"], check=True, capture_output=True)
        deadline = time.monotonic() + 10
        while (
            b"cluster_state:ok" not in subprocess.run([*cli, "CLUSTER", "INFO"], check=True, capture_output=True).stdout
        ):
            if time.monotonic() > deadline:
                pytest.fail("one-node redis cluster did not reach cluster_state:ok")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, for tests that stop and restart it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis_store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    """A store on the session's redis-server, under a prefix of its own."""
    store = RedisStore(f"{redis_server.url}/0?prefix=t{new_id()}")
    yield store
    await store.aclose()

"""Fixtures for the store tests: private redis-servers (started here, stopped by pid)."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from attesto_asgi_redis import RedisStore

from attesto_asgi._secrets import new_id
from tests.stores.redis_server import RedisServer, free_port


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


def _self_signed(workdir: Path) -> tuple[Path, Path]:
    """A P-256 certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = workdir / "cert.pem", workdir / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A redis-server that also listens with TLS: its ``rediss://`` URL and its CA file."""
    workdir = tmp_path_factory.mktemp("redis-tls")
    cert, key = _self_signed(workdir)
    tls_port = free_port()
    extra = ("--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key))
    server = RedisServer(workdir, extra=(*extra, "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"))
    server.start()
    try:
        yield f"rediss://127.0.0.1:{tls_port}", cert
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

"""Four OS processes, each with its own event loop and store connection, race through the
real middleware against one SQLite file and then one Redis (issue 5): one authorization
code redeemed by all four at once, then one refresh token rotated by all four at once.
Each time exactly one process wins, the others' replays revoke the family (once, across
processes), and nothing answers 5xx."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from attesto_asgi_redis import RedisStore

from attesto_asgi import AttestoMiddleware, Config, KeySet, issue_code
from attesto_asgi._secrets import new_id, token_hash
from attesto_asgi.model import CodeReused
from tests.core.grants.authcode_helpers import pkce_pair
from tests.helpers import ISSUER, access_token_revoked, http_client, not_found_app
from tests.stores.mp_worker import SPA_REDIRECT, clients
from tests.stores.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shared.db"
    server: RedisServer = request.getfixturevalue("redis_server")
    return f"{server.url}/0?prefix=mp{new_id()}"


@pytest.fixture
def keys_file(tmp_path: Path) -> str:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(KeySet.generate("ES256").private_jwks()))
    return str(path)


class Outcome:
    """What the workers answered and emitted."""

    def __init__(self, lines: list[dict[str, Any]]) -> None:
        self.responses = [line for line in lines if "status" in line]
        self.events = Counter(name for line in lines for name in line.get("events", ()))

    @property
    def statuses(self) -> list[int]:
        return [r["status"] for r in self.responses]


class Workers:
    """N worker processes started together; each prints ``ready``, then waits for ``go``."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def race(self, store_url: str, keys_file: str, form: dict[str, str], timeout: float = 60) -> Outcome:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.stores.mp_worker", store_url, keys_file, json.dumps([form])],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(WORKERS)
        ]
        self.procs += procs
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if line != "ready":
                p.kill()
                _, err = p.communicate(timeout=timeout)
                pytest.fail(f"worker did not start: {line!r}\n{err}")
        for p in procs:  # the start signal, to all at once
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        lines: list[dict[str, Any]] = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err
            lines += [json.loads(line) for line in out.splitlines() if line.strip()]
        return Outcome(lines)

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def workers() -> Iterator[Workers]:
    w = Workers()
    yield w
    w.kill()


async def refresh_rows(store_url: str, family_id: str) -> int:
    """How many refresh tokens the family has in the backend's raw data (the protocol hides a
    revoked family's tokens)."""
    if store_url.startswith("sqlite:"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
            return int(db.execute("SELECT count(*) FROM refresh WHERE family_id = ?", (family_id,)).fetchone()[0])
    store = RedisStore(store_url)
    try:
        return len([k async for k in store.client.scan_iter(match=f"{{{store.prefix}:{family_id}}}:rt:*")])
    finally:
        await store.aclose()


async def raw_dump(store_url: str) -> bytes:
    """Everything the backend holds: the SQLite file and its WAL, or every key and value."""
    if store_url.startswith("sqlite:"):
        path = Path(store_url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    store = RedisStore(store_url)
    try:
        out = []
        async for key in store.client.scan_iter(match=f"*{store.prefix}*"):
            out.append(key)
            if await store.client.type(key) == b"hash":
                out += [k + b"=" + v for k, v in (await store.client.hgetall(key)).items()]
            else:
                out.append(await store.client.get(key) or b"")
        return b"\n".join(out)
    finally:
        await store.aclose()


async def new_code(config: Config) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    code = await issue_code(
        config,
        client_id="spa",
        redirect_uri=SPA_REDIRECT,
        subject="alice",
        scope="openid offline_access",
        code_challenge=challenge,
        auth_time=config.clock() - 30,
    )
    return code, verifier


def code_form(code: str, verifier: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": "spa",
        "code_verifier": verifier,
        "redirect_uri": SPA_REDIRECT,
    }


def assert_refused_but_one(outcome: Outcome) -> dict[str, Any] | None:
    """At most one 200, every other answer invalid_grant, no 5xx, and the family revoked
    exactly once across all processes. The 200 body, or None when the replays revoked the
    winner's family before it answered (the core then refuses it too: tokens of a revoked
    family never go out)."""
    assert len(outcome.responses) == WORKERS
    assert all(s < 500 for s in outcome.statuses), outcome.responses  # contention is never a 5xx
    assert outcome.events["family_revoked"] == 1, outcome.events
    won = [r for r in outcome.responses if r["status"] == 200]
    assert len(won) <= 1, outcome.responses
    for r in outcome.responses:
        if r["status"] != 200:
            assert r["status"] == 400
            assert r["body"]["error"] == "invalid_grant", r
    return won[0]["body"] if won else None


async def test_four_processes_race_a_code_and_a_refresh_token(store_url: str, keys_file: str, workers: Workers) -> None:
    config = Config(issuer=ISSUER, keys=KeySet.load(keys_file), store=store_url, clients=clients())
    store = config.backend
    try:
        # 1. One code, redeemed by four processes at once.
        code, verifier = await new_code(config)
        outcome = workers.race(store_url, keys_file, code_form(code, verifier))
        body = assert_refused_but_one(outcome)
        # Exactly one process took the code: each of the other three was told it was reused.
        assert outcome.events["code_reuse_detected"] == WORKERS - 1, outcome.events
        reused = await store.take_code(token_hash(code))
        assert isinstance(reused, CodeReused)  # someone took it: the tombstone names the family
        assert await store.family_revoked(reused.family_id) is True
        if body is not None:
            assert body["refresh_token"].split(".")[0] == reused.family_id
            assert await access_token_revoked(store, body["access_token"]) is True

        # 2. One refresh token (from a fresh code, redeemed once here), rotated by four at once.
        async with http_client(AttestoMiddleware(not_found_app, config)) as http:
            r: httpx.Response = await http.post("/oauth/token", data=code_form(*await new_code(config)))
        assert r.status_code == 200, r.text
        refresh = r.json()["refresh_token"]
        family_id = refresh.split(".")[0]
        outcome = workers.race(
            store_url, keys_file, {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "spa"}
        )
        body = assert_refused_but_one(outcome)
        # A replay was detected (a loser saw the token rotated); later ones found the family
        # already revoked. The token was rotated exactly once: the family holds the presented
        # token and one successor (each rotation stores its successor in the same step).
        assert outcome.events["refresh_reuse_detected"] >= 1, outcome.events
        assert outcome.events["refresh_rotated"] <= 1, outcome.events
        assert await store.family_revoked(family_id) is True
        assert await refresh_rows(store_url, family_id) == 2
        secrets = [code, refresh, refresh.split(".")[1]]
        if body is not None:
            assert body["refresh_token"].split(".")[0] == family_id
            assert body["refresh_token"] != refresh
            secrets += [body["refresh_token"], body["refresh_token"].split(".")[1]]

        # 3. At rest: the family id and token hashes are there, no code or token is.
        raw = await raw_dump(store_url)
        assert family_id.encode() in raw
        assert token_hash(refresh).encode() in raw
        for secret in secrets:
            assert secret.encode() not in raw
    finally:
        await store.aclose()

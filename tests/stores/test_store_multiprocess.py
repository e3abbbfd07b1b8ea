"""Four OS processes, each with its own event loop and store connection, race through the
real middleware against one SQLite file and then one Redis (issue 5): one authorization
code redeemed by all four at once gives exactly one token response, the replay revokes the
family, and nothing answers 5xx."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attesto_asgi import Config, KeySet, issue_code
from attesto_asgi._secrets import new_id, token_hash
from attesto_asgi.model import CodeReused
from tests.core.grants.authcode_helpers import pkce_pair
from tests.helpers import ISSUER, jwt_claims
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
    keys = KeySet.generate("ES256")
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(keys.private_jwks()))
    return str(path)


class Workers:
    """N worker processes started together; each prints ``ready``, then waits for ``go``."""

    def __init__(self, store_url: str, keys_file: str, forms: list[list[dict[str, str]]]) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.stores.mp_worker", store_url, keys_file, json.dumps(f)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for f in forms
        ]

    def run(self, timeout: float = 60) -> list[dict[str, Any]]:
        for p in self.procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if line != "ready":
                p.kill()
                _, err = p.communicate(timeout=timeout)
                pytest.fail(f"worker did not start: {line!r}\n{err}")
        for p in self.procs:  # the start signal, to all at once
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results: list[dict[str, Any]] = []
        for p in self.procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err
            results += [json.loads(line) for line in out.splitlines() if line.strip()]
        return results

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def workers() -> Iterator[list[Workers]]:
    started: list[Workers] = []
    yield started
    for w in started:
        w.kill()


async def test_four_processes_redeem_one_code(store_url: str, keys_file: str, workers: list[Workers]) -> None:
    config = Config(issuer=ISSUER, keys=KeySet.load(keys_file), store=store_url, clients=clients())
    store = config.backend
    try:
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
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": "spa",
            "code_verifier": verifier,
            "redirect_uri": SPA_REDIRECT,
        }
        w = Workers(store_url, keys_file, [[form]] * WORKERS)
        workers.append(w)
        results = w.run()

        assert len(results) == WORKERS
        assert all(r["status"] < 500 for r in results), results  # contention is never a 5xx
        # Exactly one process took the code; the three replays are invalid_grant.
        replays = [r for r in results if r["status"] == 400 and r["body"]["error"] == "invalid_grant"]
        assert len(replays) == WORKERS - 1, results
        (winner,) = [r for r in results if r not in replays]
        # The replays revoke the code's family in the shared store (RFC 9700 §4.13). The
        # winner gets its tokens (200) unless that revocation landed before its refresh
        # token was stored, in which case it is refused too (400): never a token that lives.
        reused = await store.take_code(token_hash(code))
        assert isinstance(reused, CodeReused)
        assert await store.family_revoked(reused.family_id) is True
        assert winner["status"] in (200, 400), results
        if winner["status"] == 200:
            body = winner["body"]
            assert body["refresh_token"].split(".")[0] == reused.family_id
            assert await store.access_token_revoked(jwt_claims(body["access_token"])["jti"]) is True
    finally:
        await store.aclose()

"""README's one command for the examples, ``python -m examples.run``, as a real process tree:
it starts provider, relying party and API, prints the URL to open, and a sign-in through
that URL works; SIGTERM stops all of them."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.examples.support import ALICE, ALICE_SUB, ROOT, bind_loopback, form_fields
from tests.stores.redis_server import RedisServer


def free_ports(n: int) -> list[int]:
    socks = [bind_loopback() for _ in range(n)]
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@contextlib.contextmanager
def running_demo(tmp_path: Path, store: str | None) -> Iterator[tuple[subprocess.Popen[str], dict[str, str], str]]:
    """``python -m examples.run`` with free ports; ``store`` None: the README default."""
    provider, rp, api = free_ports(3)
    env = os.environ | {
        "PROVIDER_PORT": str(provider),
        "RP_PORT": str(rp),
        "API_PORT": str(api),
        "DEMO_DATA_DIR": str(tmp_path / "demo-data"),
        "DEMO_API_CLIENT_SECRET": secrets.token_urlsafe(32),
    }
    env.pop("ATTESTO_STORE", None)
    if store is not None:
        env["ATTESTO_STORE"] = store
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True)
    reader.start()
    output: list[str] = []
    url = None
    deadline = time.monotonic() + 90
    try:
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, "examples.run exited:\n" + "".join(output)
                continue
            output.append(line)
            match = re.search(r"Open (http://127\.0\.0\.1:\d+/)", line)
            url = match.group(1) if match else None
        assert url is not None, "examples.run printed no URL:\n" + "".join(output)
        yield proc, env, url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def sign_in_call_the_api_and_stop(proc: subprocess.Popen[str], env: dict[str, str], url: str) -> None:
    provider = f"http://127.0.0.1:{env['PROVIDER_PORT']}"
    assert url == f"http://127.0.0.1:{env['RP_PORT']}/"
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        login_page = browser.get(f"{url}login")
        assert str(login_page.url).startswith(f"{provider}/login?authz=")
        fields = form_fields(login_page.text, "/login") | {"username": ALICE[0], "password": ALICE[1]}
        consent_page = browser.post(f"{provider}/login", data=fields)
        assert "Allow" in consent_page.text
        home = browser.post(
            f"{provider}/consent", data=form_fields(consent_page.text, "/consent") | {"decision": "allow"}
        )
        assert str(home.url) == url
        assert "Hello, Alice Liddell" in home.text
        assert ALICE_SUB in home.text

    # The reports API is up and trusts the provider.
    api = f"http://127.0.0.1:{env['API_PORT']}"
    token = httpx.post(
        f"{provider}/oauth/token",
        data={"grant_type": "client_credentials", "resource": api},
        auth=("reports-cli", env["DEMO_API_CLIENT_SECRET"]),
    ).json()["access_token"]
    assert httpx.get(f"{api}/reports", headers={"authorization": f"Bearer {token}"}).status_code == 200

    # SIGTERM stops the runner and the three servers with it.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    for port in (env["PROVIDER_PORT"], env["RP_PORT"], env["API_PORT"]):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)


def test_one_command_starts_everything_and_the_url_signs_in(tmp_path: Path) -> None:
    with running_demo(tmp_path, store=None) as (proc, env, url):
        sign_in_call_the_api_and_stop(proc, env, url)
    # The README default keeps the provider's state in SQLite in the data dir.
    assert (tmp_path / "demo-data" / "provider.db").stat().st_size > 0


def test_one_setting_moves_the_provider_to_redis(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        prefix = "examples-run"
        with running_demo(tmp_path, store=f"redis://127.0.0.1:{redis.port}/0?prefix={prefix}") as (proc, env, url):
            sign_in_call_the_api_and_stop(proc, env, url)
        keys = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(redis.port), "--scan", "--pattern", f"*{prefix}*"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert keys, "the provider stored nothing in Redis"
        assert not (tmp_path / "demo-data" / "provider.db").exists()
    finally:
        redis.stop()

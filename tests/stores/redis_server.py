"""A private ``redis-server`` on a free loopback port, for the store tests.

If redis-server cannot be started the tests FAIL, never skip: CI must not go green
without having exercised the Redis backend.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(*, cluster: bool = False) -> int:
    """A free loopback port; for a cluster node also its bus port (+10000), so at most 55535."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not cluster:
            return port
        port = 20000 + port % 35000  # into 20000..54999
        if _is_free(port) and _is_free(port + 10000):
            return port
    raise RuntimeError("no free loopback port")


_PROCESS_ID = re.compile(rb"process_id:(\d+)\r\n")


def _serves(port: int, pid: int) -> bool:
    """Whether the redis-server of process ``pid`` answers on ``port``: a bare PONG could
    come from another test process's server that took the port first (pytest-xdist runs
    several), while ours is still failing to bind it."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"INFO server\r\n")
            reply = b""
            while (found := _PROCESS_ID.search(reply)) is None:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                reply += chunk
            return int(found[1]) == pid
    except OSError:
        return False


class RedisServer:
    """A private, non-persistent redis-server on 127.0.0.1; stop/start keep its port."""

    def __init__(self, workdir: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.port = port or free_port(cluster="--cluster-enabled" in extra)
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed: the Redis store tests cannot run")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        args = [
            exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir), "--protected-mode", "yes", "--daemonize", "no", *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if _serves(self.port, self.proc.pid):
                return
            time.sleep(0.02)
        self.stop()
        tail = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
        pytest.fail(f"redis-server did not start on 127.0.0.1:{self.port}:\n{tail}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # by pid: only the server this helper started
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

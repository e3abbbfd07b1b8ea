"""Stage 2: over HTTP. One server process (uvicorn with httptools + uvloop, or granian),
one worker, driven by wrk with ``wrk/post.lua`` at each concurrency.

The server mints the request bodies at start-up (``benchmarks.serve``), so every code and
refresh token is valid; each concurrency level takes the next unused slice of them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import FORM_HEADERS, TOKEN_PATH, Keys
from .env import Env, free_port, wait_port
from .scenarios import Scenario

__all__ = ["HTTPServer", "run_http", "wrk_once"]

HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk" / "post.lua"
AUTHORIZATION = dict(FORM_HEADERS)[b"authorization"].decode()


def server_command(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.serve:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--lifespan",
            "on",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    if server == "granian":
        return [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--http",
            "1",
            "--no-ws",
            "--loop",
            "uvloop",
            "--log-level",
            "warning",
            "benchmarks.serve:app",
        ]
    raise ValueError(f"unknown server {server!r}")


class HTTPServer:
    """One server process serving one scenario, with ``count`` request bodies minted."""

    def __init__(self, server: str, scenario: Scenario, store_url: str, keys: Keys, workdir: Path, count: int) -> None:
        self.server = server
        self.workdir = workdir
        self.env = {
            **os.environ,
            "BENCH_SCENARIO": scenario.name,
            "BENCH_STORE_URL": store_url,
            "BENCH_KEY": json.dumps(keys.private_jwk()),
            "BENCH_COUNT": str(count),
            "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
        }
        self._start()

    def _start(self) -> None:
        self.port = free_port()
        self.bodies = self.workdir / f"bodies-{self.server}-{self.port}.txt"
        self.log = self.workdir / f"server-{self.server}-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                server_command(self.server, self.port),
                env={**self.env, "BENCH_BODIES": str(self.bodies)},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=HERE.parent,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float, tries: int = 3) -> None:
        """Until the bodies are minted and the port answers. A server that exits instead (its
        port was taken in the meantime by another process on the machine) is started again
        on another port."""
        deadline = time.monotonic() + timeout
        while not self.bodies.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        try:
            wait_port(self.port, max(1.0, deadline - time.monotonic()), self.proc)
            time.sleep(0.2)
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
        except RuntimeError:
            if tries <= 1:
                raise
            self.stop()
            self._start()
            self.wait_ready(max(10.0, deadline - time.monotonic()), tries - 1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            # The server's own process group (granian forks its worker): end it by its pid.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __enter__(self) -> HTTPServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def first_request(port: int, bodies: Path, keys: Keys, grant: str) -> None:
    """One request by hand before wrk: the answer must be a token signed with the shared key.
    It uses the pool's first body; wrk starts after it."""
    import http.client

    from .stage_inprocess import check_response

    body = bodies.read_bytes().split(b"\n", 1)[0]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {k.decode(): v.decode() for k, v in FORM_HEADERS}
        conn.request("POST", TOKEN_PATH, body=body, headers=headers)
        response = conn.getresponse()
        check_response(response.status, response.read(), keys, grant)
    finally:
        conn.close()


def wrk_once(
    wrk: str, port: int, bodies: Path, offset: int, reuse: bool, connections: int, seconds: float
) -> dict[str, Any]:
    """One wrk run; its JSON summary plus the requests per second."""
    cmd = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}/oauth/token",
        "--",
        str(bodies),
        str(offset),
        "reuse" if reuse else "once",
        AUTHORIZATION,
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=seconds + 60)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("{"))
    data: dict[str, Any] = json.loads(line)
    data["errors"] = data["non2xx"] + data["connect"] + data["read"] + data["write"] + data["timeout"]
    data["ok"] = data["requests"] - data["non2xx"]
    data["rate"] = data["ok"] / (data["duration_us"] / 1e6)
    return data


def run_http(
    scenarios: list[Scenario],
    env: Env,
    keys: Keys,
    wrk: str,
    *,
    servers: list[str],
    concurrency: list[int],
    seconds: float,
    rounds: int,
    expected_rate: Callable[[Scenario], float],
    tick: Callable[[str], None],
    warmup: bool = True,
) -> list[dict[str, Any]]:
    """For each server kind, every scenario's server is started at once; then, concurrency by
    concurrency, each gets one wrk run per round in a rotated order, so that runs compared
    with each other are next to each other in time. A figure is the best of its rounds: the
    other tenants of a shared machine only ever slow a run down."""
    results: list[dict[str, Any]] = []
    for server in servers:
        running: list[tuple[Scenario, HTTPServer, bool]] = []
        try:
            for sc in scenarios:
                reuse = sc.grant == "client_credentials"
                # Enough bodies for every run at well above the in-process rate (which is sequential:
                # concurrency over HTTP can beat it for a networked store), plus slack.
                per_run = int(max(expected_rate(sc) * 2.5, 1200) * max(seconds, 1.0)) + 300
                count = 1 if reuse else per_run * (len(concurrency) * rounds + 1) + 2 * sum(concurrency) * rounds
                running.append((sc, HTTPServer(server, sc, env.store_url(sc.store), keys, env.dir, count), reuse))
            offsets: dict[str, int] = {}
            for sc, srv, reuse in running:
                srv.wait_ready(300)
                first_request(srv.port, srv.bodies, keys, sc.grant)
                offsets[sc.name] = 0 if reuse else 1
                if warmup:
                    warm = wrk_once(wrk, srv.port, srv.bodies, offsets[sc.name], reuse, 16, 1.0)
                    offsets[sc.name] += 0 if reuse else warm["requests"] + 16
            for c in concurrency:
                runs: dict[str, list[dict[str, Any]]] = {sc.name: [] for sc, _, _ in running}
                for i in range(rounds):
                    k = i % len(running)
                    for sc, srv, reuse in running[k:] + running[:k]:
                        run = wrk_once(wrk, srv.port, srv.bodies, offsets[sc.name], reuse, c, seconds)
                        if not reuse:
                            offsets[sc.name] += run["requests"] + c
                        runs[sc.name].append(run)
                        tick(f"{server} {sc.name} c={c}")
                for sc, _, _ in running:
                    rs = sorted(runs[sc.name], key=lambda r: r["rate"])
                    best = rs[-1]
                    results.append(
                        {
                            "server": server,
                            "impl": sc.impl,
                            "grant": sc.grant,
                            "store": sc.store,
                            "concurrency": c,
                            "rate": best["rate"],
                            "rounds": [round(r["rate"], 1) for r in runs[sc.name]],
                            "ok": sum(r["ok"] for r in rs),
                            "errors": sum(r["errors"] for r in rs),
                            "p50_ms": best["p50_us"] / 1000,
                            "p99_ms": best["p99_us"] / 1000,
                        }
                    )
        finally:
            for _, srv, _ in running:
                srv.stop()
    return results

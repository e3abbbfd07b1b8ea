"""Stage 2: over HTTP. One server process (uvicorn with httptools + uvloop, or granian),
one worker, driven by wrk with ``wrk/post.lua`` at each concurrency.

The server mints the request bodies at start-up (``benchmarks.serve``), so every code and
refresh token is valid; each wrk run takes the next unused slice of them.

The scenarios that are compared are measured next to each other in time: one *group* per
grant (every scenario of that grant, and the floor), and for each concurrency, ``rounds``
rounds in which each group's members get one wrk run each, back to back, in an order that
alternates from round to round. A ratio between two scenarios is then the median of their
per-round ratios (``benchmarks/report.py``), as in-process, and every per-round rate is kept.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .common import FORM_HEADERS, TOKEN_PATH, Keys
from .env import Env, free_port, wait_port
from .scenarios import Scenario

__all__ = ["HTTPServer", "comparison_groups", "http_steps", "round_order", "run_http", "wrk_once"]

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
    """One wrk run of about ``seconds``; its JSON summary plus the requests per second.

    wrk's ``-d`` takes whole seconds: it is started for longer and stopped with SIGINT, on
    which it stops its connections and reports as usual (the rate is over the time it
    measured itself)."""
    cmd = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{math.ceil(seconds) + 1}s",
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
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    line = next((ln for ln in out.splitlines() if ln.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err[-2000:]}{out[-2000:]}")
    data: dict[str, Any] = json.loads(line)
    data["errors"] = data["non2xx"] + data["connect"] + data["read"] + data["write"] + data["timeout"]
    data["ok"] = data["requests"] - data["non2xx"]
    data["rate"] = data["ok"] / (data["duration_us"] / 1e6)
    return data


def comparison_groups(scenarios: Sequence[Scenario]) -> list[tuple[str, list[Scenario]]]:
    """The scenarios measured next to each other: one group per grant, each with the floor
    (the report compares every row with the floor and with the peers on its grant; the
    floor's own group is client_credentials)."""
    floors = [sc for sc in scenarios if sc.impl == "floor"]
    groups = []
    for grant in dict.fromkeys(sc.grant for sc in scenarios):
        members = [sc for sc in scenarios if sc.grant == grant]
        groups.append((grant, members + [f for f in floors if f not in members]))
    return groups


def round_order(members: Sequence[Scenario], i: int) -> list[Scenario]:
    """Round ``i``'s order: rotated by one every two rounds, and reversed in odd rounds, so
    that of any two members each goes first in half of the rounds (and a store's background
    work or a server's wake-up does not always fall on the same neighbour)."""
    k = (i // 2) % len(members)
    order = list(members[k:]) + list(members[:k])
    return order[::-1] if i % 2 else order


def http_steps(scenarios: Sequence[Scenario], servers: Sequence[str], concurrency: Sequence[int], rounds: int) -> int:
    """How many wrk runs ``run_http`` makes (for the progress bar)."""
    per_round = sum(len(members) for _, members in comparison_groups(scenarios))
    return len(servers) * len(concurrency) * rounds * per_round


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


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
    """For each server kind, every scenario's server is started at once and kept running;
    then, concurrency by concurrency, ``rounds`` rounds each give every group (see
    ``comparison_groups``) one wrk run per member, back to back. A row's figure is the
    median of its runs (the floor's: of all its runs, in every group); ``rounds`` keeps
    its rate in each round of its own grant's group, ``rounds_in`` the floor's in the
    other groups, so the report can pair any two rows measured side by side."""
    groups = comparison_groups(scenarios)
    memberships = {sc: sum(sc in members for _, members in groups) for sc in scenarios}
    results: list[dict[str, Any]] = []
    for server in servers:
        running: dict[Scenario, tuple[HTTPServer, bool]] = {}
        try:
            for sc in scenarios:
                reuse = sc.grant == "client_credentials"
                # Enough bodies for every run at well above the in-process rate (concurrency over
                # HTTP can beat it for a networked store), plus slack: wrk stops up to 0.1 s
                # after the signal, and up to ``c`` requests are in flight when it stops.
                per_run = int(max(expected_rate(sc) * 2.5, 1200) * (seconds + 0.2)) + 300
                runs = len(concurrency) * rounds * memberships[sc]
                count = 1 if reuse else per_run * (runs + 1) + 2 * sum(concurrency) * rounds * memberships[sc]
                running[sc] = (HTTPServer(server, sc, env.store_url(sc.store), keys, env.dir, count), reuse)
            offsets: dict[Scenario, int] = {}
            for sc, (srv, reuse) in running.items():
                srv.wait_ready(300)
                first_request(srv.port, srv.bodies, keys, sc.grant)
                offsets[sc] = 0 if reuse else 1
                if warmup:
                    warm = wrk_once(wrk, srv.port, srv.bodies, offsets[sc], reuse, 16, max(seconds, 0.5))
                    offsets[sc] += 0 if reuse else warm["requests"] + 16
            for c in concurrency:
                # (group, scenario) -> that scenario's runs in that group, one per round
                runs_in: dict[tuple[str, Scenario], list[dict[str, Any]]] = {}
                for i in range(rounds):
                    for grant, members in groups:
                        for sc in round_order(members, i):
                            srv, reuse = running[sc]
                            run = wrk_once(wrk, srv.port, srv.bodies, offsets[sc], reuse, c, seconds)
                            if not reuse:
                                offsets[sc] += run["requests"] + c
                            runs_in.setdefault((grant, sc), []).append(run)
                            tick(f"{server} {sc.name} c={c}")
                for sc in scenarios:
                    mine = {g: rs for (g, s), rs in runs_in.items() if s == sc}
                    every = [r for rs in mine.values() for r in rs]
                    results.append(
                        {
                            "server": server,
                            "impl": sc.impl,
                            "grant": sc.grant,
                            "store": sc.store,
                            "concurrency": c,
                            "rate": _median([r["rate"] for r in every]),
                            "rounds": [round(r["rate"], 1) for r in mine.get(sc.grant, [])],
                            "rounds_in": {
                                g: [round(r["rate"], 1) for r in rs] for g, rs in mine.items() if g != sc.grant
                            },
                            "seconds": [round(r["duration_us"] / 1e6, 3) for r in every],
                            "ok": sum(r["ok"] for r in every),
                            "errors": sum(r["errors"] for r in every),
                            "p50_ms": _median([r["p50_us"] for r in every]) / 1000,
                            "p99_ms": _median([r["p99_us"] for r in every]) / 1000,
                        }
                    )
        finally:
            for srv, _ in running.values():
                srv.stop()
    return results

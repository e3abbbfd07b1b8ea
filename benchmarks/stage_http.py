"""Stage 2: over HTTP. One server process (uvicorn with httptools + uvloop, or granian),
one worker, driven by wrk with ``wrk/post.lua`` at each concurrency.

The server mints the request bodies (``benchmarks.serve``: at start-up, then before each
round what the round may need), so every code and refresh token is valid; each wrk run
takes the next unused slice of them.

The scenarios that are compared are measured next to each other in time: one *group* per
grant (every scenario of that grant, and the floor), and for each concurrency, ``rounds``
rounds in which each group's members get one wrk run each, back to back, in an order that
alternates from round to round. A ratio between two scenarios is then the median of their
per-round ratios (``benchmarks/report.py``), as in-process, and every per-round rate is kept.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .build import server_cwd
from .common import FORM_HEADERS, TOKEN_PATH, Keys
from .env import Env, free_port, wait_port
from .scenarios import Scenario
from .serve import MINT_PATH

__all__ = ["RAMP_S", "HTTPServer", "comparison_groups", "http_steps", "round_order", "run_http", "top_up", "wrk_once"]

HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk" / "post.lua"
AUTHORIZATION = dict(FORM_HEADERS)[b"authorization"].decode()
# The least rate a run's share of bodies is sized for (tokens/s), whatever in-process said.
_MIN_RATE = 20_000.0
# Each connection's first request is held this long after it connects (post.lua's delay()),
# so the server has accepted every connection before the load starts, and a run measures
# the steady state at its concurrency, not wrk opening its connections all at once.
# The libuv inside uvloop accepts one connection per loop turn (since libuv PR #3696): on
# a busy server the last of 64 new connections waited 200-300 ms in the listen queue with
# its first request already written, which wrk counted as latency and, with its
# coordinated-omission correction, turned into p99s of ~100-200 ms (the floor included).
# The run lasts this much longer, and its rate is taken over the time after it.
RAMP_S = 0.05


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
    """One server process serving one scenario, with ``count`` request bodies minted at
    start-up and more on demand (``mint``); ``used`` counts the bodies already sent."""

    def __init__(self, server: str, scenario: Scenario, store_url: str, keys: Keys, workdir: Path, count: int) -> None:
        self.server = server
        self.workdir = workdir
        self.env = {
            **os.environ,
            "BENCH_SCENARIO": scenario.name,
            "BENCH_STORE_URL": store_url,
            "BENCH_KEY": json.dumps(keys.private_jwk()),
            "BENCH_COUNT": str(count),
            # After what the run put first (the compiled build, benchmarks/build.py).
            "PYTHONPATH": os.pathsep.join(
                [*filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)), str(HERE.parent)]
            ),
        }
        self._start()

    def _start(self) -> None:
        self.port = free_port()
        self.bodies = self.workdir / f"bodies-{self.server}-{self.port}.txt"
        self.used = 0
        self._starts = [0]  # where each line of the bodies file starts, and where the last ends
        self.log = self.workdir / f"server-{self.server}-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                server_command(self.server, self.port),
                env={**self.env, "BENCH_BODIES": str(self.bodies)},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=server_cwd(),
                start_new_session=True,
            )

    def _index(self) -> None:
        with self.bodies.open("rb") as f:
            f.seek(self._starts[-1])
            for line in f:
                self._starts.append(self._starts[-1] + len(line))

    @property
    def available(self) -> int:
        """Bodies minted and not yet used (the bodies file is indexed as it grows)."""
        return len(self._starts) - 1 - self.used

    @property
    def offset(self) -> int:
        """The byte offset of the first unused body in the bodies file."""
        return self._starts[min(self.used, len(self._starts) - 1)]

    def mint(self, n: int) -> None:
        """Ask the server for ``n`` more bodies (appended to the file) and wait for them."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            conn.request("POST", MINT_PATH, body=str(n).encode())
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"minting {n} bodies failed: {response.status} {answer[:300]!r}")
        finally:
            conn.close()
        self._index()

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
            self._index()
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
    wrk: str,
    port: int,
    bodies: Path,
    offset: int,
    reuse: bool,
    connections: int,
    seconds: float,
    *,
    limit: int = 0,
) -> dict[str, Any]:
    """One wrk run of about ``seconds``, sending the bodies from byte ``offset`` of the file
    (at most ``limit``; all that follow when 0); its JSON summary plus the requests per second.

    wrk's ``-d`` takes whole seconds: it is started for longer and stopped with SIGINT, on
    which it stops its connections and reports as usual, its rate over the time it measured
    itself. The signal is sent about ``seconds`` after wrk says it is running (its clock starts
    then, after the script has read its bodies; a SIGINT before that is ignored), which
    needs its output line-buffered (coreutils' ``stdbuf``)."""
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
        str(limit),
        str(round(RAMP_S * 1000)),
        str(connections),
    ]
    stdbuf = shutil.which("stdbuf")
    if stdbuf:
        cmd = [stdbuf, "-oL", *cmd]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        head = proc.stdout.readline() if stdbuf else ""  # "Running 2s test @ ..." ("" if wrk failed)
        try:
            # It does not end by itself before its -d. It notices the signal at its next 0.1 s
            # tick: sent 0.05 s early, the run lasts ``seconds`` or a tick more.
            proc.wait(timeout=max(seconds + RAMP_S - 0.05, 0.05))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
        out = head + proc.stdout.read()
        err = proc.stderr.read()
    line = next((ln for ln in out.splitlines() if ln.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err[-2000:]}{out[-2000:]}")
    data: dict[str, Any] = json.loads(line)
    data["errors"] = data["non2xx"] + data["connect"] + data["read"] + data["write"] + data["timeout"]
    data["ok"] = data["requests"] - data["non2xx"]
    # No request is sent during the ramp: the rate is over the time after it.
    data["rate"] = data["ok"] / max(data["duration_us"] / 1e6 - RAMP_S, 1e-3)
    return data


def comparison_groups(scenarios: Sequence[Scenario]) -> list[tuple[str, list[Scenario]]]:
    """The scenarios measured next to each other: one group per grant, each with the
    floor's client_credentials (the report compares every row with it and with the peers on
    its grant). The floor's other grants are members of their own grant's group only."""
    floors = [sc for sc in scenarios if sc.impl == "floor" and sc.grant == "client_credentials"]
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


def top_up(needs: Sequence[tuple[HTTPServer, int]]) -> None:
    """Have every server that holds fewer unused bodies than it needs mint the difference,
    all at once (each in its own process)."""
    short = [(srv, need - srv.available) for srv, need in needs if srv.available < need]
    if short:
        with ThreadPoolExecutor(len(short)) as pool:
            list(pool.map(lambda item: item[0].mint(item[1]), short))


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
    ``comparison_groups``) one wrk run per member, back to back (the bodies a round may
    need are minted before it starts). A row's figure is the
    median of its runs (the floor's: of all its runs, in every group); ``rounds`` keeps
    its rate in each round of its own grant's group, ``rounds_in`` the floor's in the
    other groups, so the report can pair any two rows measured side by side."""
    groups = comparison_groups(scenarios)
    memberships = {sc: sum(sc in members for _, members in groups) for sc in scenarios}
    reuse = {sc: sc.grant == "client_credentials" for sc in scenarios}
    # The most bodies one run may send: for its length plus the 0.1 s wrk may take to stop,
    # at well above the in-process rate (concurrency over HTTP can beat it for a networked
    # store) and never below _MIN_RATE, plus the requests in flight when it stops. Only what
    # the runs use is minted (``top_up``), so a generous bound costs little.
    per_run = {
        sc: int(max(expected_rate(sc) * 2.5, _MIN_RATE) * (max(seconds, 0.5) + 0.2)) + 2 * max(concurrency)
        for sc in scenarios
    }
    results: list[dict[str, Any]] = []
    for server in servers:
        running: dict[Scenario, HTTPServer] = {}

        def drive(sc: Scenario, c: int, secs: float, running: dict[Scenario, HTTPServer] = running) -> dict[str, Any]:
            srv = running[sc]
            run = wrk_once(wrk, srv.port, srv.bodies, srv.offset, reuse[sc], c, secs, limit=per_run[sc])
            if not reuse[sc]:
                # Besides the requests answered: up to c in flight when it stopped, and the one
                # body wrk takes to check the script before it starts (never sent).
                srv.used += run["requests"] + c + 1
            return run

        try:
            for sc in scenarios:
                # The first request, the warm-up and the first round; the rest on demand.
                count = 1 if reuse[sc] else 1 + per_run[sc] * (1 + memberships[sc])
                running[sc] = HTTPServer(server, sc, env.store_url(sc.store), keys, env.dir, count)
            for sc, srv in running.items():
                srv.wait_ready(300)
                first_request(srv.port, srv.bodies, keys, sc.grant)
                srv.used = 0 if reuse[sc] else 1
                if warmup:
                    drive(sc, 16, max(seconds, 0.5))
            for c in concurrency:
                # (group, scenario) -> that scenario's runs in that group, one per round
                runs_in: dict[tuple[str, Scenario], list[dict[str, Any]]] = {}
                for i in range(rounds):
                    top_up([(running[sc], per_run[sc] * memberships[sc]) for sc in scenarios if not reuse[sc]])
                    for grant, members in groups:
                        for sc in round_order(members, i):
                            runs_in.setdefault((grant, sc), []).append(drive(sc, c, seconds))
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
            for srv in running.values():
                srv.stop()
    return results

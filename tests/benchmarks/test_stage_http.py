"""The HTTP stage (benchmarks/stage_http.py): how it lays out its rounds (which scenarios
run back to back, in which order) and how a server's pool of bodies grows on demand. The
whole stage runs in test_smoke.py."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from benchmarks.common import Keys
from benchmarks.env import Env, ensure_wrk
from benchmarks.scenarios import Scenario
from benchmarks.stage_http import RAMP_S, HTTPServer, comparison_groups, http_steps, round_order, top_up, wrk_once

FLOOR = Scenario("floor", "client_credentials", "memory")
SCENARIOS = [
    Scenario("attesto", "client_credentials", "memory"),
    Scenario("attesto", "client_credentials", "redis"),
    Scenario("attesto", "refresh_token", "memory"),
    Scenario("attesto", "refresh_token", "redis"),
    FLOOR,
    Scenario("aioauth", "refresh_token", "memory"),
]


def test_one_group_per_grant_each_with_the_floor() -> None:
    groups = dict(comparison_groups(SCENARIOS))
    assert list(groups) == ["client_credentials", "refresh_token"]
    assert groups["client_credentials"] == [*SCENARIOS[:2], FLOOR]
    assert groups["refresh_token"] == [*SCENARIOS[2:4], SCENARIOS[5], FLOOR]


def test_the_floors_code_redemption_joins_its_own_group_only() -> None:
    floor_code = Scenario("floor", "authorization_code", "memory")
    code = Scenario("attesto", "authorization_code", "memory")
    groups = dict(comparison_groups([*SCENARIOS, code, floor_code]))
    assert groups["authorization_code"] == [code, floor_code, FLOOR]
    assert floor_code not in groups["client_credentials"] + groups["refresh_token"]


def test_without_the_floor_the_groups_are_the_grants() -> None:
    groups = comparison_groups([s for s in SCENARIOS if s != FLOOR])
    assert [(g, len(m)) for g, m in groups] == [("client_credentials", 2), ("refresh_token", 3)]


def test_every_pair_goes_first_in_half_of_the_rounds() -> None:
    members = SCENARIOS[:5]
    orders = [round_order(members, i) for i in range(4)]
    for order in orders:
        assert sorted(order) == sorted(members)
    for a, b in itertools.combinations(members, 2):
        assert sum(o.index(a) < o.index(b) for o in orders) == 2


def test_steps_count_the_floor_once_per_group() -> None:
    # 2 groups: 3 + 4 runs per round.
    assert http_steps(SCENARIOS, ["uvicorn", "granian"], [1, 64], 3) == 2 * 2 * 3 * 7


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    e = Env()
    yield e
    e.close()


def test_a_server_mints_more_bodies_on_demand_and_wrk_sends_each_once(env: Env) -> None:
    sc = Scenario("attesto", "refresh_token", "memory")
    with HTTPServer("uvicorn", sc, env.store_url("memory"), Keys.generate(), env.dir, 3) as srv:
        srv.wait_ready(60)
        assert srv.available == 3
        srv.mint(5)
        assert srv.available == 8
        srv.used = 1  # the first body stays unsent
        # Seven valid refresh tokens, three of them minted after start-up. wrk takes the first
        # to check the script before it starts (never sent): six are sent and answered, then
        # the pool is exhausted and every further request is refused.
        run = wrk_once(ensure_wrk(), srv.port, srv.bodies, srv.offset, False, 2, 0.5, limit=7)
        assert run["ok"] == 6
        assert run["non2xx"] == run["requests"] - 6 > 0
        srv.used += run["requests"] + 2 + 1
        top_up([(srv, 20)])
        assert srv.available == 20
        top_up([(srv, 5)])  # enough already: nothing minted
        assert srv.available == 20


class _Recording(asyncio.Protocol):
    """An HTTP/1.1 keep-alive server that answers every request with an empty JSON object and
    records, per connection, when it was accepted and when its first request arrived."""

    seen: ClassVar[list[list[float]]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.times = [time.monotonic()]
        self.seen.append(self.times)

    def data_received(self, data: bytes) -> None:
        if len(self.times) == 1:
            self.times.append(time.monotonic())
        for _ in range(data.count(b"POST ")):
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")


def test_each_connection_is_accepted_before_its_first_request_is_sent(tmp_path: Path) -> None:
    # The ramp: wrk holds each connection's first request RAMP_S after connecting, so a
    # server that accepts one connection per loop turn (uvloop's libuv) has accepted them
    # all before any latency is counted; later requests are not held.
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(_Recording, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    bodies = tmp_path / "bodies.txt"
    bodies.write_bytes(b"grant_type=client_credentials\n")
    try:
        run = wrk_once(ensure_wrk(), port, bodies, 0, True, 4, 0.3)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()
    first = [t for t in _Recording.seen if len(t) == 2]
    assert len(first) == 4
    # At least half the ramp: without it the first request follows the accept within ~1 ms,
    # and a busy machine may delay the server's accept (never wrk's timer) by a few ms.
    assert all(sent - accepted >= RAMP_S / 2 for accepted, sent in first)
    assert run["ok"] > 4 * 10  # the requests after the first go at once
    assert run["rate"] == pytest.approx(run["ok"] / (run["duration_us"] / 1e6 - RAMP_S))

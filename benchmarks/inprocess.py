"""In-process driver: the ASGI app called directly with a minimal scope/receive/send.

No network and no server: tokens/s on one core, and per-call latency. ``measure`` runs one
app for a time slice, one call at a time or from several tasks at once (a store that
overlaps concurrent operations, such as Redis with its auto-pipelining, only shows its
throughput so); the runner interleaves slices of the implementations it compares so that
machine noise hits them alike.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from .common import FORM_HEADERS, TOKEN_PATH, ASGIApp, Message

__all__ = ["RoundTrips", "Sample", "call", "latency_ms", "measure", "percentile", "round_trip"]

_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "https",
    "path": TOKEN_PATH,
    "raw_path": TOKEN_PATH.encode(),
    "root_path": "",
    "query_string": b"",
    "server": ("127.0.0.1", 443),
    "client": ("127.0.0.1", 50000),
}


@dataclass
class Sample:
    """One slice of requests: how many succeeded and failed, how long, each latency."""

    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    first_failure: str | None = None

    def add(self, other: Sample) -> None:
        self.ok += other.ok
        self.failed += other.failed
        self.seconds += other.seconds
        self.latencies_ns.extend(other.latencies_ns)
        self.first_failure = self.first_failure or other.first_failure

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def percentile(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def latency_ms(latencies_ns: list[int]) -> dict[str, float]:
    """The p50 and p99 of latencies in nanoseconds, in milliseconds, as the results record them."""
    return {"p50_ms": percentile(latencies_ns, 0.50) / 1e6, "p99_ms": percentile(latencies_ns, 0.99) / 1e6}


async def call(app: ASGIApp, body: bytes) -> tuple[int, bytes]:
    """One request: the response status and body."""
    scope = dict(_SCOPE)
    scope["headers"] = [*FORM_HEADERS, (b"content-length", str(len(body)).encode())]
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def measure(
    app: ASGIApp, bodies: list[bytes], *, seconds: float, reusable: bool, concurrency: int = 1
) -> tuple[Sample, int]:
    """Send requests for ``seconds`` (or until the bodies run out), from ``concurrency``
    tasks calling the app at once on this event loop (one core). Returns the sample and how
    many bodies were used (the caller drops them: each code or refresh token is used once).

    The tasks share the body list: a body is taken and the index moved on with no ``await``
    between them, so no two calls get the same code or refresh token. The rate is the
    successes over the wall time, until the last call started before the deadline has
    answered; a call's latency includes its waits while the other tasks run."""
    sample = Sample()
    lat = sample.latencies_ns
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    used = 0
    n = len(bodies)

    async def caller() -> None:
        nonlocal used
        now = clock()
        while now < deadline and (reusable or used < n):
            body = bodies[0] if reusable else bodies[used]
            used += 1
            t0 = clock()
            status, content = await call(app, body)
            now = clock()
            lat.append(now - t0)
            if status == 200:
                sample.ok += 1
            else:
                sample.failed += 1
                if sample.first_failure is None:
                    sample.first_failure = f"{status} {content[:200]!r}"

    start = clock()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    sample.seconds = (clock() - start) / 1e9
    return sample, used


def token_of(content: bytes) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.json.decode(content)
    return out


_PING: Final = b"*1\r\n$4\r\nPING\r\n"


async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One bare round trip to Redis: a RESP ``PING`` written, its ``+PONG`` read back."""
    writer.write(_PING)
    reply = await reader.readuntil(b"\r\n")
    if reply != b"+PONG\r\n":
        raise AssertionError(f"redis answered PING with {reply!r}")


class RoundTrips:
    """Bare round trips to a Redis server (``round_trip``), timed on the event loop the
    in-process stage runs on. No client library, no pipeline, no script: the least a round
    trip costs any client here, so the least a store operation that waits for Redis can cost."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.latencies_ns: list[int] = []

    async def sample(self, n: int = 200) -> None:
        """``n`` round trips, one at a time, on a fresh connection (its set-up not timed)."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            clock = time.perf_counter_ns
            for _ in range(n):
                t0 = clock()
                await round_trip(reader, writer)
                self.latencies_ns.append(clock() - t0)
        finally:
            writer.close()
            await writer.wait_closed()

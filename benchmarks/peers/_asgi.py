"""The few raw-ASGI helpers the peer adapters share."""

from __future__ import annotations

from typing import Any

import msgspec

from ..common import Receive, Send


async def read_body(receive: Receive) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def send_json(send: Send, status: int, content: Any, headers: dict[str, str] | None = None) -> None:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items() if k.lower() != "content-type"]
    raw.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": int(status), "headers": raw})
    await send({"type": "http.response.body", "body": msgspec.json.encode(content)})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

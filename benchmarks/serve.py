"""The ASGI app a benchmark server process serves (``benchmarks.serve:app``).

The server (uvicorn or granian, one worker) imports this module; the scenario comes from
the environment. At lifespan start-up, in the worker's own event loop, the scenario is
built and ``BENCH_COUNT`` request bodies are minted into its store (codes and refresh
tokens live in the worker's memory for the memory store) and written, one per line, to
``BENCH_BODIES``; the file appears (atomic rename) when the server is ready. Between wrk
runs the harness asks for more with ``POST /_bench/mint`` (the count as the body): they
are minted the same way and appended to the file, so a server holds about as many as its
runs use rather than as many as they might.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

from .build import check_build
from .common import Built, Keys, Receive, Scope, Send
from .scenarios import Scenario

__all__ = ["MINT_PATH", "app"]

MINT_PATH = "/_bench/mint"


class _Served:
    def __init__(self) -> None:
        self.built: Built | None = None

    async def _startup(self) -> None:
        check_build()  # the server runs the build the harness measures, never the checkout's by accident
        impl, grant, store = os.environ["BENCH_SCENARIO"].split("/")
        keys = Keys.from_private_jwk(json.loads(os.environ["BENCH_KEY"]))
        self.built = Scenario(impl, grant, store).build(os.environ["BENCH_STORE_URL"], keys)
        target = Path(os.environ["BENCH_BODIES"])
        tmp = target.with_suffix(".tmp")
        await self._mint(int(os.environ.get("BENCH_COUNT", "1")), tmp)
        tmp.rename(target)

    async def _mint(self, n: int, path: Path) -> None:
        assert self.built is not None
        bodies = await self.built.bodies(n)
        with path.open("ab") as out:
            out.write(b"\n".join(bodies) + b"\n")
        # The pre-minted pool is state a real server would not hold: keep it out of every
        # later garbage collection, as a server freezing its start-up heap would.
        del bodies
        gc.collect()
        gc.freeze()

    async def _mint_more(self, receive: Receive, send: Send) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await self._mint(int(body), Path(os.environ["BENCH_BODIES"]))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"minted"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    try:
                        await self._startup()
                    except Exception as exc:
                        await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                        raise
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.built is not None:
                        await self.built.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.built is not None
        if scope["type"] == "http" and scope["path"] == MINT_PATH and not self.built.reusable:
            await self._mint_more(receive, send)
            return
        await self.built.app(scope, receive, send)


app = _Served()

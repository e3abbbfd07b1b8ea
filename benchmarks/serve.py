"""The ASGI app a benchmark server process serves (``benchmarks.serve:app``).

The server (uvicorn or granian, one worker) imports this module; the scenario comes from
the environment. At lifespan start-up, in the worker's own event loop, the scenario is
built and ``BENCH_COUNT`` request bodies are minted into its store (codes and refresh
tokens live in the worker's memory for the memory store) and written, one per line, to
``BENCH_BODIES``; the file appears (atomic rename) when the server is ready.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

from .common import Built, Keys, Receive, Scope, Send
from .scenarios import Scenario

__all__ = ["app"]


class _Served:
    def __init__(self) -> None:
        self.built: Built | None = None

    async def _startup(self) -> None:
        impl, grant, store = os.environ["BENCH_SCENARIO"].split("/")
        keys = Keys.from_private_jwk(json.loads(os.environ["BENCH_KEY"]))
        self.built = Scenario(impl, grant, store).build(os.environ["BENCH_STORE_URL"], keys)
        bodies = await self.built.bodies(int(os.environ.get("BENCH_COUNT", "1")))
        target = Path(os.environ["BENCH_BODIES"])
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(b"\n".join(bodies) + b"\n")
        # The pre-minted pool is start-up state a real server would not hold: keep it out of
        # every later garbage collection, as a server freezing its start-up heap would.
        del bodies
        gc.collect()
        gc.freeze()
        tmp.rename(target)

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
        await self.built.app(scope, receive, send)


app = _Served()

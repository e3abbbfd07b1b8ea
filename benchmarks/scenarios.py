"""The scenario registry: one small pluggable unit per (implementation, grant, store).

A scenario knows whether it can run here (``skip_reason``) and builds a ``Built``: the ASGI
app and a way to mint valid request bodies. Adding a grant or a store is one entry in
``_SUPPORT`` plus the target module's ``build`` handling it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Final

from .common import GRANTS, IMPLS, STORES, Built, Keys

__all__ = ["Scenario", "all_scenarios"]

# impl -> (module, grants it serves, stores it serves). Peers keep their documented
# in-memory storage; the floor answers client_credentials and authorization_code, from dicts.
_SUPPORT: Final[dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]] = {
    "attesto": ("benchmarks.attesto", GRANTS, STORES),
    "floor": ("benchmarks.floor_target", ("client_credentials", "authorization_code"), ("memory",)),
    "aioauth": ("benchmarks.peers.aioauth_server", GRANTS, ("memory",)),
    "authlib": ("benchmarks.peers.authlib_server", GRANTS, ("memory",)),
}


@dataclass(frozen=True, order=True)
class Scenario:
    impl: str
    grant: str
    store: str

    @property
    def name(self) -> str:
        return f"{self.impl}/{self.grant}/{self.store}"

    @property
    def module(self) -> str:
        return _SUPPORT[self.impl][0]

    def skip_reason(self) -> str | None:
        try:
            mod = importlib.import_module(self.module)
        except ImportError as exc:
            return f"{self.impl} not installed ({exc.name})"
        check = getattr(mod, "available", None)
        return check(self.grant, self.store) if check is not None else None

    def build(self, store_url: str, keys: Keys) -> Built:
        built: Built = importlib.import_module(self.module).build(self.grant, store_url, keys)
        return built


def all_scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    for impl in IMPLS:
        _, grants, stores = _SUPPORT[impl]
        out.extend(Scenario(impl, g, s) for g in grants for s in stores)
    return out

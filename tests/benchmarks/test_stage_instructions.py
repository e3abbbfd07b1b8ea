"""The callgrind stage's measured process: what the two counted runs have in common cancels."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import stage_instructions
from benchmarks.common import Built, Keys
from benchmarks.scenarios import Scenario


@pytest.mark.parametrize("grant", ["authorization_code", "refresh_token", "client_credentials"])
def test_both_runs_mint_the_same_bodies_whatever_they_serve(monkeypatch: pytest.MonkeyPatch, grant: str) -> None:
    # (many - few) / (large - small) is the cost of one request only if minting is the same in
    # both runs: a run minting only what it sends would put a mint into every request's count.
    minted: list[int] = []
    served: list[int] = []
    build = Scenario.build

    def counting_build(self: Scenario, store_url: str, keys: Keys) -> Built:
        built = build(self, store_url, keys)
        mint, app = built.mint, built.app

        async def counted_mint(n: int) -> list[bytes]:
            minted.append(n)
            return await mint(n)

        async def counted_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            served.append(1)
            await app(scope, receive, send)

        built.mint, built.app = counted_mint, counted_app
        return built

    monkeypatch.setattr(Scenario, "build", counting_build)
    runs = []
    for n in (3, 9):
        minted.clear()
        served.clear()
        stage_instructions.main(["attesto", grant, str(n), "10"])
        runs.append((list(minted), len(served)))
    (mint_few, served_few), (mint_many, served_many) = runs
    assert mint_few == mint_many == ([1] if grant == "client_credentials" else [10])
    assert (served_few, served_many) == (4, 10)  # one warm-up request, then n


def test_the_measured_command_passes_what_to_mint() -> None:
    cmd = stage_instructions._measured(Scenario("floor", "authorization_code", "memory"), 200, 1201)
    assert cmd[-4:] == ["floor", "authorization_code", "200", "1201"]

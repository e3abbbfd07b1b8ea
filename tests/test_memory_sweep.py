"""MemoryStore housekeeping: expired entries are dropped, and sweeping stays O(1) per write."""

from __future__ import annotations

from attesto_asgi.memory import _SWEEP_EVERY, MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_expired_entries_are_dropped_by_a_later_sweep() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock, warn=False)
    for i in range(100):
        await store.revoke_access_token(f"old-{i}", clock.now + 10)
    clock.now += 60  # all of them expired
    for i in range(2 * _SWEEP_EVERY):
        await store.revoke_access_token(f"new-{i}", clock.now + 3600)
    assert not [k for k in store._revoked_jtis if k.startswith("old-")]
    assert await store.access_token_revoked("new-0", None)


async def test_sweeps_are_spaced_by_the_number_of_live_entries() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock, warn=False)
    sweeps = 0
    sweep = store._sweep

    def counting(now: float) -> None:
        nonlocal sweeps
        sweeps += 1
        sweep(now)

    store._sweep = counting  # type: ignore[method-assign]
    live = 8 * _SWEEP_EVERY
    for i in range(live):  # nothing expires: every entry stays
        await store.revoke_access_token(f"jti-{i}", clock.now + 3600)
    # With n live entries a sweep costs O(n); spacing sweeps n writes apart keeps the
    # total work linear. A fixed interval would have swept live / _SWEEP_EVERY = 8 times.
    assert sweeps <= 4
    assert len(store._revoked_jtis) == live

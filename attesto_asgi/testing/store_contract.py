"""``StoreContract``: the conformance suite every ``Store`` backend runs.

Subclass it in a test module (the class name must start with ``Test``) and provide:

- a ``store_factory`` fixture returning a callable ``(clock) -> Store`` (or an awaitable
  of one). Every store it returns within one test must share one backend (the same file,
  server, database or prefix): the suite opens several to race them against each other
  and to check durability. Stores whose backend cannot share state between instances
  (the in-memory one) return the same instance each time.
- ``dump_raw(store) -> bytes``: the backend's raw data (file bytes, keys and values, rows)
  for the "no secret is ever stored" check.
- the class attributes below when the defaults do not fit: ``controllable_clock = False``
  when the backend keeps time itself (Redis TTLs); ``durable = False`` when closing and
  reopening loses the data (memory).

The suite never reaches into a backend: everything it checks goes through the ``Store``
protocol, except the raw dump. Times are epoch seconds. See docs/store.md.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar

import msgspec
import pytest

from .._secrets import new_id, new_token, token_hash
from ..model import (
    AlreadyRotated,
    CodeRecord,
    CodeReused,
    FamilyRevoked,
    RefreshRecord,
    RefreshUnknown,
    Rotated,
)
from ..store import Store

__all__ = ["ContractClock", "StoreContract", "StoreFactory"]

Clock = Callable[[], float]
StoreFactory = Callable[[Clock], "Store | Awaitable[Store]"]

T = TypeVar("T")

# An hour: "long enough that nothing expires during a test".
LONG = 3600.0


class ContractClock:
    """The time a test runs at. Controllable: ``advance`` moves a fake clock the stores
    read. Real: the stores keep their own time and ``advance`` sleeps."""

    def __init__(self, *, controllable: bool) -> None:
        self.controllable = controllable
        self._now = float(int(time.time()))

    def __call__(self) -> float:
        return self._now if self.controllable else time.time()

    async def advance(self, seconds: float) -> None:
        if self.controllable:
            self._now += seconds
        else:
            await asyncio.sleep(seconds)


class _Opened:
    """Opens stores through the factory and closes every one of them at teardown."""

    def __init__(self, factory: StoreFactory, clock: ContractClock) -> None:
        self._factory = factory
        self._clock = clock
        self.opened: list[Store] = []

    async def open(self) -> Store:
        made = self._factory(self._clock)
        store = await made if inspect.isawaitable(made) else made
        assert isinstance(store, Store), f"{type(store).__name__} does not implement the Store protocol"
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in reversed(self.opened):
            await store.aclose()
        self.opened.clear()


# ---------------------------------------------------------------- record builders


def make_code(now: float, *, ttl: float = 60.0, reuse_margin: float = 60.0, **over: Any) -> CodeRecord:
    """A fully populated code record for a fresh random code (``over`` replaces fields)."""
    code = new_token()
    fields: dict[str, Any] = {
        "code_hash": token_hash(code),
        "client_id": "client-" + new_id(),
        "redirect_uri": "https://rp.example/cb?x=1",
        "subject": "user-" + new_id(),
        "scope": ("openid", "offline_access", "profile"),
        "family_id": new_id(),
        "issued_at": now,
        "expires_at": now + ttl,
        "reuse_detect_until": now + ttl + reuse_margin,
        "auth_time": int(now) - 30,
        "nonce": "n-0S6_WzA2Mj",
        "acr": "urn:mace:incommon:iap:silver",
        "amr": ("pwd", "otp"),
        "sid": new_id(),
        "claims": {"userinfo": {"email": {"essential": True}}, "id_token": {"acr": None}},
        "resource": ("https://api.example/", "https://other.example/"),
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    fields.update(over)
    return CodeRecord(**fields)


def make_refresh(
    now: float, *, family_id: str | None = None, ttl: float = LONG, generation: int = 0, **over: Any
) -> RefreshRecord:
    """A fully populated, unrotated refresh record for a fresh random token."""
    fields: dict[str, Any] = {
        "token_hash": token_hash(new_token()),
        "family_id": family_id or new_id(),
        "client_id": "client-1",
        "subject": "user-1",
        "scope": ("openid", "offline_access"),
        "issued_at": now,
        "expires_at": now + ttl,
        "family_expires_at": now + 30 * 86400.0,
        "generation": generation,
        "resource": ("https://api.example/",),
        "auth_time": int(now) - 30,
        "acr": "1",
        "amr": ("pwd",),
        "sid": "sid-1",
    }
    fields.update(over)
    return RefreshRecord(**fields)


def successor_of(record: RefreshRecord, now: float, *, ttl: float = LONG) -> RefreshRecord:
    """The next generation of ``record``: same family, new token, fresh expiry."""
    return msgspec.structs.replace(
        record,
        token_hash=token_hash(new_token()),
        issued_at=now,
        expires_at=min(now + ttl, record.family_expires_at),
        generation=record.generation + 1,
        rotated_at=None,
        successor_hash=None,
        sealed_successor=None,
    )


def _unrotated(record: RefreshRecord) -> RefreshRecord:
    return msgspec.structs.replace(record, rotated_at=None, successor_hash=None, sealed_successor=None)


# A sealed successor is opaque bytes: include NUL, high bytes and invalid UTF-8.
SEALED = b"\x00\xff\xfe sealed\x80\x00" + bytes(range(256))


class StoreContract:
    """The conformance suite. Subclass as ``TestMyStore(StoreContract)``; see the module doc."""

    # The stores read the ContractClock passed to the factory (False: real time, real TTLs).
    controllable_clock: ClassVar[bool] = True
    # Closing every store and opening a new one keeps the data.
    durable: ClassVar[bool] = True
    # With a real clock: the short lifetime used by expiry tests, and the slack after it.
    short_ttl: ClassVar[float] = 0.5
    slack: ClassVar[float] = 0.15
    # Races: this many concurrent calls on one key, spread over this many stores.
    race_width: ClassVar[int] = 50
    race_stores: ClassVar[int] = 4

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.durable:
            # Not collected at all (rather than skipped): a declared property, not a gap.
            cls.test_state_survives_reopening = None  # type: ignore[assignment,method-assign]

    # ------------------------------------------------------------- what a backend provides
    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        raise NotImplementedError("override the store_factory fixture: return (clock) -> Store")

    async def dump_raw(self, store: Store) -> bytes:
        """Everything the backend persisted for this test, as raw bytes."""
        raise NotImplementedError("override dump_raw(store) -> bytes for the secret-scan check")

    # ------------------------------------------------------------- fixtures the suite uses
    @pytest.fixture
    def clock(self) -> ContractClock:
        return ContractClock(controllable=self.controllable_clock)

    @pytest.fixture
    async def stores(self, store_factory: StoreFactory, clock: ContractClock) -> AsyncIterator[_Opened]:
        opened = _Opened(store_factory, clock)
        try:
            yield opened
        finally:
            await opened.close_all()

    @pytest.fixture
    async def store(self, stores: _Opened) -> Store:
        return await stores.open()

    @property
    def ttl(self) -> float:
        """A lifetime that ends within a test when the clock is advanced by ``self.expire``."""
        return self.short_ttl if not self.controllable_clock else 10.0

    @property
    def expire(self) -> float:
        return self.ttl + self.slack

    async def _peers(self, stores: _Opened, first: Store) -> list[Store]:
        return [first] + [await stores.open() for _ in range(self.race_stores - 1)]

    @staticmethod
    async def _race(peers: Sequence[Store], call: Callable[[Store, int], Awaitable[T]], n: int) -> list[T]:
        """Start ``n`` calls at once, round-robin over ``peers``; all results."""
        gate = asyncio.Event()

        async def one(i: int) -> T:
            await gate.wait()
            return await call(peers[i % len(peers)], i)

        tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(*tasks)

    # ================================================================== protocol shape
    async def test_implements_store_protocol(self, store: Store) -> None:
        assert isinstance(store, Store)
        for name in (
            "claim_once", "revoke_family", "family_revoked", "revoke_access_token",
            "access_token_revoked", "put_code", "take_code", "put_refresh", "get_refresh",
            "rotate_refresh", "aclose",
        ):  # fmt: skip
            assert inspect.iscoroutinefunction(getattr(store, name)), f"{name} must be async"

    # ================================================================== codes
    async def test_code_round_trip_keeps_every_field(self, store: Store, clock: ContractClock) -> None:
        rec = make_code(clock())
        await store.put_code(rec)
        assert await store.take_code(rec.code_hash) == rec

    async def test_code_round_trip_with_empty_optionals(self, store: Store, clock: ContractClock) -> None:
        rec = make_code(
            clock(), auth_time=None, nonce=None, acr=None, amr=(), sid=None, claims=None,
            resource=(), code_challenge=None, code_challenge_method=None, scope=(),
        )  # fmt: skip
        await store.put_code(rec)
        assert await store.take_code(rec.code_hash) == rec

    async def test_unknown_code_is_none(self, store: Store) -> None:
        assert await store.take_code(token_hash(new_token())) is None

    async def test_code_is_taken_once_then_reported_reused(self, store: Store, clock: ContractClock) -> None:
        rec = make_code(clock())
        other = make_code(clock())
        await store.put_code(rec)
        await store.put_code(other)
        assert await store.take_code(rec.code_hash) == rec
        reused = CodeReused(family_id=rec.family_id, client_id=rec.client_id)
        assert await store.take_code(rec.code_hash) == reused
        assert await store.take_code(rec.code_hash) == reused
        # Other codes are untouched by the tombstone.
        assert await store.take_code(other.code_hash) == other

    async def test_expired_code_is_none_and_leaves_no_reuse_report(self, store: Store, clock: ContractClock) -> None:
        live = make_code(clock(), ttl=self.ttl)
        dead = make_code(clock(), ttl=self.ttl)
        await store.put_code(live)
        await store.put_code(dead)
        assert await store.take_code(live.code_hash) == live
        await clock.advance(self.expire)
        assert await store.take_code(dead.code_hash) is None
        # A code that expired unused issued nothing: no tombstone, no family to revoke.
        assert await store.take_code(dead.code_hash) is None
        # The redeemed one still reports its reuse after its own expiry (tombstone outlives it).
        assert await store.take_code(live.code_hash) == CodeReused(family_id=live.family_id, client_id=live.client_id)

    async def test_code_tombstone_ends_at_reuse_detect_until(self, store: Store, clock: ContractClock) -> None:
        rec = make_code(clock(), ttl=self.ttl, reuse_margin=self.ttl)
        await store.put_code(rec)
        assert await store.take_code(rec.code_hash) == rec
        await clock.advance(self.expire)
        assert isinstance(await store.take_code(rec.code_hash), CodeReused)
        await clock.advance(self.ttl)
        assert await store.take_code(rec.code_hash) is None

    async def test_code_race_has_exactly_one_winner(self, store: Store, stores: _Opened, clock: ContractClock) -> None:
        rec = make_code(clock())
        await store.put_code(rec)
        peers = await self._peers(stores, store)

        async def take(s: Store, _: int) -> CodeRecord | CodeReused | None:
            return await s.take_code(rec.code_hash)

        results = await self._race(peers, take, self.race_width)
        assert [r for r in results if isinstance(r, CodeRecord)] == [rec]
        reused = CodeReused(family_id=rec.family_id, client_id=rec.client_id)
        assert results.count(reused) == self.race_width - 1

    # ================================================================== refresh tokens
    async def test_refresh_round_trip_keeps_every_field(self, store: Store, clock: ContractClock) -> None:
        rec = make_refresh(clock(), generation=7)
        bare = make_refresh(clock(), resource=(), auth_time=None, acr=None, amr=(), sid=None, scope=())
        assert await store.put_refresh(rec) is True
        assert await store.put_refresh(bare) is True
        assert await store.get_refresh(rec.family_id, rec.token_hash) == rec
        assert await store.get_refresh(bare.family_id, bare.token_hash) == bare
        # get is non-consuming.
        assert await store.get_refresh(rec.family_id, rec.token_hash) == rec

    async def test_refresh_is_keyed_by_family_and_hash(self, store: Store, clock: ContractClock) -> None:
        rec = make_refresh(clock())
        await store.put_refresh(rec)
        assert await store.get_refresh(new_id(), rec.token_hash) is None
        assert await store.get_refresh(rec.family_id, token_hash(new_token())) is None

    async def test_expired_refresh_is_gone(self, store: Store, clock: ContractClock) -> None:
        short = make_refresh(clock(), ttl=self.ttl)
        long = make_refresh(clock(), family_id=short.family_id)
        await store.put_refresh(short)
        await store.put_refresh(long)
        assert await store.get_refresh(short.family_id, short.token_hash) == short
        await clock.advance(self.expire)
        assert await store.get_refresh(short.family_id, short.token_hash) is None
        assert (
            await store.rotate_refresh(short.family_id, short.token_hash, successor_of(short, clock()), None)
            == RefreshUnknown()
        )
        assert await store.get_refresh(long.family_id, long.token_hash) == long

    async def test_put_refresh_into_revoked_family_is_refused(self, store: Store, clock: ContractClock) -> None:
        rec = make_refresh(clock())
        assert await store.revoke_family(rec.family_id, clock() + self.ttl) is True
        assert await store.put_refresh(rec) is False
        assert await store.get_refresh(rec.family_id, rec.token_hash) is None
        # Nothing was stored: once the revocation ends the token still does not exist.
        await clock.advance(self.expire)
        assert await store.family_revoked(rec.family_id) is False
        assert await store.get_refresh(rec.family_id, rec.token_hash) is None
        # And the family accepts tokens again (it was revoked until then, not forever).
        assert await store.put_refresh(rec) is True
        assert await store.get_refresh(rec.family_id, rec.token_hash) == rec

    async def test_revoked_family_hides_its_refresh_tokens(self, store: Store, clock: ContractClock) -> None:
        rec = make_refresh(clock())
        bystander = make_refresh(clock())
        await store.put_refresh(rec)
        await store.put_refresh(bystander)
        await store.revoke_family(rec.family_id, clock() + LONG)
        assert await store.get_refresh(rec.family_id, rec.token_hash) is None
        assert await store.get_refresh(bystander.family_id, bystander.token_hash) == bystander

    async def test_rotate_marks_old_and_stores_successor(self, store: Store, clock: ContractClock) -> None:
        old = make_refresh(clock())
        await store.put_refresh(old)
        await clock.advance(1.0 if self.controllable_clock else 0.01)
        succ = successor_of(old, clock())
        before = clock()
        result = await store.rotate_refresh(old.family_id, old.token_hash, succ, SEALED)
        after = clock()
        # The answer carries the presented token as it was before this rotation.
        assert result == Rotated(record=old)
        got = await store.get_refresh(old.family_id, old.token_hash)
        assert got is not None
        assert got.rotated_at is not None
        assert before <= got.rotated_at <= after
        assert got.successor_hash == succ.token_hash
        assert got.sealed_successor == SEALED
        assert _unrotated(got) == old
        assert await store.get_refresh(succ.family_id, succ.token_hash) == succ

    async def test_rotate_without_sealed_successor(self, store: Store, clock: ContractClock) -> None:
        old = make_refresh(clock())
        await store.put_refresh(old)
        succ = successor_of(old, clock())
        assert await store.rotate_refresh(old.family_id, old.token_hash, succ, None) == Rotated(record=old)
        got = await store.get_refresh(old.family_id, old.token_hash)
        assert got is not None
        assert got.sealed_successor is None
        assert got.successor_hash == succ.token_hash

    async def test_second_rotation_reports_already_rotated(self, store: Store, clock: ContractClock) -> None:
        old = make_refresh(clock())
        await store.put_refresh(old)
        succ = successor_of(old, clock())
        await store.rotate_refresh(old.family_id, old.token_hash, succ, SEALED)
        rotated = await store.get_refresh(old.family_id, old.token_hash)
        assert rotated is not None
        intruder = successor_of(old, clock())
        result = await store.rotate_refresh(old.family_id, old.token_hash, intruder, b"other")
        assert result == AlreadyRotated(record=rotated, successor_used=False)
        # The losing successor was not stored; the rotation fields did not change.
        assert await store.get_refresh(old.family_id, intruder.token_hash) is None
        assert await store.get_refresh(old.family_id, old.token_hash) == rotated

    async def test_already_rotated_reports_a_used_successor(self, store: Store, clock: ContractClock) -> None:
        gen0 = make_refresh(clock())
        await store.put_refresh(gen0)
        gen1 = successor_of(gen0, clock())
        gen2 = successor_of(gen1, clock())
        assert isinstance(await store.rotate_refresh(gen0.family_id, gen0.token_hash, gen1, None), Rotated)
        assert isinstance(await store.rotate_refresh(gen1.family_id, gen1.token_hash, gen2, None), Rotated)
        again = await store.rotate_refresh(gen0.family_id, gen0.token_hash, successor_of(gen0, clock()), None)
        assert isinstance(again, AlreadyRotated)
        assert again.successor_used is True
        assert again.record.successor_hash == gen1.token_hash
        # gen1's own successor is unused: a retry of gen1 may be graced.
        retry = successor_of(gen1, clock())
        again1 = await store.rotate_refresh(gen1.family_id, gen1.token_hash, retry, None)
        assert isinstance(again1, AlreadyRotated)
        assert again1.successor_used is False

    async def test_already_rotated_reports_an_expired_successor_as_used(
        self, store: Store, clock: ContractClock
    ) -> None:
        old = make_refresh(clock())
        await store.put_refresh(old)
        succ = successor_of(old, clock(), ttl=self.ttl)
        assert isinstance(await store.rotate_refresh(old.family_id, old.token_hash, succ, SEALED), Rotated)
        await clock.advance(self.expire)
        again = await store.rotate_refresh(old.family_id, old.token_hash, successor_of(old, clock()), None)
        assert isinstance(again, AlreadyRotated)
        assert again.successor_used is True

    async def test_rotate_unknown_is_refresh_unknown(self, store: Store, clock: ContractClock) -> None:
        rec = make_refresh(clock())
        await store.put_refresh(rec)
        ghost = make_refresh(clock(), family_id=rec.family_id)
        assert (
            await store.rotate_refresh(rec.family_id, ghost.token_hash, successor_of(ghost, clock()), None)
            == RefreshUnknown()
        )
        # A token presented under another family id is unknown there.
        other_family = new_id()
        moved = msgspec.structs.replace(successor_of(rec, clock()), family_id=other_family)
        assert await store.rotate_refresh(other_family, rec.token_hash, moved, None) == RefreshUnknown()
        assert await store.get_refresh(rec.family_id, rec.token_hash) == rec

    async def test_rotate_in_revoked_family_is_refused_first(self, store: Store, clock: ContractClock) -> None:
        live = make_refresh(clock())
        rotated = make_refresh(clock(), family_id=live.family_id)
        await store.put_refresh(live)
        await store.put_refresh(rotated)
        rotated_succ = successor_of(rotated, clock())
        await store.rotate_refresh(rotated.family_id, rotated.token_hash, rotated_succ, None)
        assert await store.revoke_family(live.family_id, clock() + self.ttl) is True
        fr = FamilyRevoked(family_id=live.family_id)
        succ = successor_of(live, clock())
        # FamilyRevoked wins over every other answer: live, already rotated, unknown.
        assert await store.rotate_refresh(live.family_id, live.token_hash, succ, None) == fr
        assert (
            await store.rotate_refresh(rotated.family_id, rotated.token_hash, successor_of(rotated, clock()), None)
            == fr
        )
        assert await store.rotate_refresh(live.family_id, token_hash(new_token()), succ, None) == fr
        # Nothing changed: once the revocation ends, the live token is still unrotated and
        # the refused successor was never stored.
        await clock.advance(self.expire)
        assert await store.get_refresh(live.family_id, live.token_hash) == live
        assert await store.get_refresh(live.family_id, succ.token_hash) is None

    async def test_rotate_race_has_exactly_one_winner(
        self, store: Store, stores: _Opened, clock: ContractClock
    ) -> None:
        old = make_refresh(clock())
        await store.put_refresh(old)
        peers = await self._peers(stores, store)
        successors = [successor_of(old, clock()) for _ in range(self.race_width)]

        async def rotate(s: Store, i: int) -> object:
            return await s.rotate_refresh(old.family_id, old.token_hash, successors[i], bytes([i]))

        results = await self._race(peers, rotate, self.race_width)
        winners = [i for i, r in enumerate(results) if isinstance(r, Rotated)]
        assert len(winners) == 1, results
        assert results[winners[0]] == Rotated(record=old)
        losers = [r for r in results if isinstance(r, AlreadyRotated)]
        assert len(losers) == self.race_width - 1
        won = successors[winners[0]]
        for lost in losers:
            assert lost.record.successor_hash == won.token_hash
            assert lost.record.sealed_successor == bytes([winners[0]])
        # Only the winner's successor exists.
        stored = [s for s in successors if await store.get_refresh(old.family_id, s.token_hash) is not None]
        assert stored == [won]

    # ================================================================== families
    async def test_revoke_family_is_idempotent(self, store: Store, clock: ContractClock) -> None:
        fam, other = new_id(), new_id()
        assert await store.family_revoked(fam) is False
        assert await store.revoke_family(fam, clock() + LONG) is True
        assert await store.revoke_family(fam, clock() + LONG) is False
        assert await store.revoke_family(fam, clock() + 2 * LONG) is False
        assert await store.family_revoked(fam) is True
        assert await store.family_revoked(other) is False

    async def test_revocation_is_sticky_and_ends(self, store: Store, clock: ContractClock) -> None:
        fam = new_id()
        assert await store.revoke_family(fam, clock() + 2 * self.ttl) is True
        # A later, shorter revocation never shortens it.
        assert await store.revoke_family(fam, clock() + self.ttl / 4) is False
        await clock.advance(self.expire)
        assert await store.family_revoked(fam) is True
        await clock.advance(self.ttl)
        assert await store.family_revoked(fam) is False
        # Once ended, revoking again is a new revocation.
        assert await store.revoke_family(fam, clock() + LONG) is True

    async def test_revoke_family_race_has_exactly_one_winner(
        self, store: Store, stores: _Opened, clock: ContractClock
    ) -> None:
        fam = new_id()
        peers = await self._peers(stores, store)

        async def revoke(s: Store, i: int) -> bool:
            return await s.revoke_family(fam, clock() + LONG + i)

        results = await self._race(peers, revoke, self.race_width)
        assert results.count(True) == 1

    # ================================================================== access tokens
    # Access tokens are never recorded when issued: access_token_revoked(jti, family_id) is
    # asked with the jti and the family (fid) of a token whose signature was verified.

    async def test_unknown_jti_of_a_live_family_is_not_revoked(self, store: Store, clock: ContractClock) -> None:
        fam = new_id()
        assert await store.access_token_revoked(new_id(), fam) is False
        assert await store.access_token_revoked(new_id(), None) is False
        # Another family's revocation and another jti's revocation leave it alone.
        await store.revoke_family(new_id(), clock() + LONG)
        await store.revoke_access_token(new_id(), clock() + LONG)
        assert await store.access_token_revoked(new_id(), fam) is False

    async def test_revoked_jti_is_revoked_with_or_without_a_family(self, store: Store, clock: ContractClock) -> None:
        jti, sibling, loner = new_id(), new_id(), new_id()
        fam = new_id()
        await store.revoke_access_token(jti, clock() + LONG)
        assert await store.access_token_revoked(jti, fam) is True
        assert await store.access_token_revoked(jti, None) is True
        assert await store.access_token_revoked(jti, new_id()) is True
        # One token's revocation is not its family's.
        assert await store.access_token_revoked(sibling, fam) is False
        assert await store.family_revoked(fam) is False
        # A token without a family (client_credentials) is revoked one by one.
        assert await store.access_token_revoked(loner, None) is False
        await store.revoke_access_token(loner, clock() + LONG)
        assert await store.access_token_revoked(loner, None) is True

    async def test_every_jti_of_a_revoked_family_is_revoked(self, store: Store, clock: ContractClock) -> None:
        fam, other = new_id(), new_id()
        jti, minted_later = new_id(), new_id()
        assert await store.access_token_revoked(jti, fam) is False
        await store.revoke_family(fam, clock() + self.ttl)
        # Any jti carrying the family: none was recorded, one minted after the revocation too.
        assert await store.access_token_revoked(jti, fam) is True
        assert await store.access_token_revoked(minted_later, fam) is True
        # Without the family (None), or with another one, only the jti itself counts.
        assert await store.access_token_revoked(jti, None) is False
        assert await store.access_token_revoked(jti, other) is False
        # Revoked both ways: still one answer.
        await store.revoke_access_token(jti, clock() + LONG)
        assert await store.access_token_revoked(jti, fam) is True
        # The family's revocation ends (past every token it minted); the jti's own does not yet.
        await clock.advance(self.expire)
        assert await store.access_token_revoked(minted_later, fam) is False
        assert await store.access_token_revoked(jti, fam) is True

    async def test_access_token_revocation_ends_with_the_token(self, store: Store, clock: ContractClock) -> None:
        jti, keep = new_id(), new_id()
        await store.revoke_access_token(jti, clock() + self.ttl)
        await store.revoke_access_token(keep, clock() + self.ttl)
        # A later, longer revocation of the same jti extends it; a shorter one does not shorten.
        await store.revoke_access_token(keep, clock() + LONG)
        await store.revoke_access_token(keep, clock() + self.ttl / 4)
        assert await store.access_token_revoked(jti, None) is True
        await clock.advance(self.expire)
        assert await store.access_token_revoked(jti, None) is False
        assert await store.access_token_revoked(keep, None) is True

    # ================================================================== replay cache
    async def test_claim_once(self, store: Store) -> None:
        key, other = "jti:" + new_id(), "jti:" + new_id()
        assert await store.claim_once(key, LONG) is True
        assert await store.claim_once(key, LONG) is False
        assert await store.claim_once(other, LONG) is True

    async def test_claim_ends_after_ttl(self, store: Store, clock: ContractClock) -> None:
        key = "dpop:" + new_id()
        assert await store.claim_once(key, self.ttl) is True
        assert await store.claim_once(key, self.ttl) is False
        await clock.advance(self.expire)
        assert await store.claim_once(key, self.ttl) is True
        assert await store.claim_once(key, self.ttl) is False

    async def test_claim_race_has_exactly_one_winner(self, store: Store, stores: _Opened) -> None:
        key = "jti:" + new_id()
        peers = await self._peers(stores, store)

        async def claim(s: Store, _: int) -> bool:
            return await s.claim_once(key, LONG)

        results = await self._race(peers, claim, self.race_width)
        assert results.count(True) == 1

    # ================================================================== sharing, durability, secrets
    async def test_state_is_shared_between_stores(self, store: Store, stores: _Opened, clock: ContractClock) -> None:
        code = make_code(clock())
        rt = make_refresh(clock())
        await store.put_code(code)
        await store.put_refresh(rt)
        peer = await stores.open()
        assert await peer.get_refresh(rt.family_id, rt.token_hash) == rt
        assert await peer.take_code(code.code_hash) == code
        assert isinstance(await store.take_code(code.code_hash), CodeReused)

    async def test_state_survives_reopening(self, stores: _Opened, clock: ContractClock) -> None:
        first = await stores.open()
        code = make_code(clock())
        rt = make_refresh(clock())
        await first.put_code(code)
        await first.put_refresh(rt)
        assert await first.take_code(code.code_hash) == code
        await first.rotate_refresh(rt.family_id, rt.token_hash, successor_of(rt, clock()), SEALED)
        fam = new_id()
        await first.revoke_family(fam, clock() + LONG)
        await first.claim_once("k:" + fam, LONG)
        await stores.close_all()
        # Restarts must not reset reuse detection (Keycloak CVE-2026-9802).
        second = await stores.open()
        assert await second.take_code(code.code_hash) == CodeReused(family_id=code.family_id, client_id=code.client_id)
        again = await second.rotate_refresh(rt.family_id, rt.token_hash, successor_of(rt, clock()), None)
        assert isinstance(again, AlreadyRotated)
        assert again.record.sealed_successor == SEALED
        assert await second.family_revoked(fam) is True
        assert await second.claim_once("k:" + fam, LONG) is False

    async def test_no_secret_in_raw_data(self, store: Store, clock: ContractClock) -> None:
        secrets: list[str] = []
        hashes: list[str] = []
        for _ in range(3):
            code = new_token()
            secrets.append(code)
            rec = make_code(clock(), code_hash=token_hash(code))
            hashes.append(rec.code_hash)
            await store.put_code(rec)
        await store.take_code(hashes[0])
        fam = new_id()
        tokens = [new_token() for _ in range(3)]
        secrets += tokens
        r0 = make_refresh(clock(), family_id=fam, token_hash=token_hash(tokens[0]))
        await store.put_refresh(r0)
        r1 = successor_of(r0, clock())
        r1 = msgspec.structs.replace(r1, token_hash=token_hash(tokens[1]))
        await store.rotate_refresh(fam, r0.token_hash, r1, SEALED)
        r2 = make_refresh(clock(), family_id=fam, token_hash=token_hash(tokens[2]))
        await store.put_refresh(r2)
        hashes += [token_hash(t) for t in tokens]
        await store.revoke_access_token(new_id(), clock() + LONG)
        raw = await self.dump_raw(store)
        # The dump is real: it holds the storage keys and family id...
        for h in hashes:
            assert h.encode() in raw, "dump_raw does not return the stored data"
        assert fam.encode() in raw
        # ...and never a bearer secret (DESIGN §6: a store dump yields no usable code or token).
        for s in secrets:
            assert s.encode() not in raw, "a raw secret was found in the backend's data"

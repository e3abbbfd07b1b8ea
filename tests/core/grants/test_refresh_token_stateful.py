"""Hypothesis stateful test: random issue / refresh / replay / revoke / disable / clock-advance
sequences through real HTTP against the middleware, checked step by step against a small
reference model of the refresh_token rules (DESIGN §4, issue #4).

The model is written from the rules, not from the code: a live token rotates once; a
rotated token is a grace retry only when it is the one just replaced (successor unused),
inside the window measured from its rotation, from its client, for the same scope;
anything else revokes the family; expiry slides but never passes the family's end.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, precondition, rule

from attesto_asgi import Config, MemoryStore
from attesto_asgi.events import FAMILY_REVOKED, REFRESH_REUSE_DETECTED, REFRESH_ROTATED
from tests.core.grants.refresh_support import API, REFRESH_CLIENTS, Env, RecordingHooks, record_of, seed_refresh
from tests.helpers import ISSUER, FakeClock, examples, jwt_claims, keyset

TOKEN_TTL = 100
FAMILY_TTL = 150
AT_TTL = 30
CLIENTS = ("app", "other")
SUBJECTS = ("alice", "bob")
GRANTED = (
    ("openid", "offline_access", "read"),
    ("read", "write"),
    ("openid", "offline_access", "read", "write"),
)
REQUESTED = ("read", "write read", "openid read", "offline_access openid read", "admin", "profile")
# Half the requests omit scope (the original), the rest narrow it or ask for too much.
REQUESTED_SCOPE = st.one_of(st.none(), st.sampled_from(REQUESTED))


@dataclass
class Family:
    subject: str
    expires_at: float
    revoked: bool = False


@dataclass
class Token:
    token: str
    family: str
    client_id: str
    scope: tuple[str, ...]
    generation: int
    expires_at: float
    rotated_at: float | None = None
    successor: str | None = None
    # What the rotating request was granted (the grace retry must ask for the same).
    rotated_for: frozenset[str] = field(default_factory=frozenset)


def narrow(requested: str | None, granted: tuple[str, ...]) -> tuple[str, ...] | None:
    """RFC 6749 §6 on the model's side: None when the request is wider than the grant."""
    if requested is None:
        return granted
    asked = tuple(dict.fromkeys(requested.split(" ")))
    return asked if set(asked) <= set(granted) else None


class RefreshMachine(RuleBasedStateMachine):
    grace: ClassVar[int] = 0

    tokens = Bundle("tokens")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.hooks = RecordingHooks()
        self.config = Config(
            issuer=ISSUER,
            keys=keyset("ES256"),
            store=MemoryStore(clock=self.clock, warn=False),
            clients=REFRESH_CLIENTS,
            hooks=self.hooks,
            clock=self.clock,
            refresh_grace=self.grace,
            refresh_token_ttl=TOKEN_TTL,
            refresh_family_ttl=FAMILY_TTL,
            access_token_ttl=AT_TTL,
            # One audience for every client, so only the client check tells two clients' retries apart.
            default_audience=API,
        )
        self.env = Env(self.config, self.hooks)
        self.families: dict[str, Family] = {}
        self.model: dict[str, Token] = {}
        self.last_rotation: tuple[str, str, str | None] | None = None

    def teardown(self) -> None:
        self.loop.run_until_complete(self.env.aclose())
        self.loop.close()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    # ------------------------------------------------------------- rules

    @rule(
        target=tokens,
        client_id=st.sampled_from(CLIENTS),
        subject=st.sampled_from(SUBJECTS),
        scope=st.sampled_from(GRANTED),
    )
    def issue(self, client_id: str, subject: str, scope: tuple[str, ...]) -> str:
        token: str = self.run(seed_refresh(self.config, client_id=client_id, subject=subject, scope=scope))
        now = self.clock.now
        family = token.split(".", 1)[0]
        self.families[family] = Family(subject=subject, expires_at=now + FAMILY_TTL)
        self.model[token] = Token(token, family, client_id, scope, 0, min(now + TOKEN_TTL, now + FAMILY_TTL))
        return token

    @rule(target=tokens, token=tokens, client_id=st.sampled_from(CLIENTS), requested=REQUESTED_SCOPE)
    def refresh(self, token: str, client_id: str, requested: str | None) -> Any:
        """Any token ever seen, by either client: use, replay, or a stolen token."""
        return self._refresh(token, client_id, requested)

    @precondition(lambda self: any(self._heads()))
    @rule(target=tokens, pick=st.integers(0, 1000), requested=REQUESTED_SCOPE)
    def refresh_head(self, pick: int, requested: str | None) -> Any:
        """The well-behaved client: the newest token of a family, by its own client."""
        heads = self._heads()
        t = heads[pick % len(heads)]
        return self._refresh(t.token, t.client_id, requested)

    def _heads(self) -> list[Token]:
        now = self.clock.now
        return [
            t
            for t in self.model.values()
            if t.rotated_at is None and now < t.expires_at and not self.families[t.family].revoked
        ]

    @precondition(lambda self: self.last_rotation is not None)
    @rule(target=tokens, same_client=st.booleans(), same_scope=st.booleans(), requested=REQUESTED_SCOPE)
    def retry_last_rotation(self, same_client: bool, same_scope: bool, requested: str | None) -> Any:
        """The token just rotated, again: a client whose response was lost sends the same
        request; or a thief replays it, from another client or for another scope."""
        assert self.last_rotation is not None
        token, client_id, original = self.last_rotation
        if not same_client:
            client_id = CLIENTS[1 - CLIENTS.index(client_id)]
        return self._refresh(token, client_id, original if same_scope else requested)

    @precondition(lambda self: self.last_rotation is not None and self.grace > 0)
    @rule(offset=st.sampled_from([-0.5, 0, 0.5]))
    def advance_to_the_window_edge(self, offset: float) -> None:
        """Move the clock to just before, exactly at, or just after the end of the last
        rotation's grace window (when that is not in the past)."""
        assert self.last_rotation is not None
        rotated_at = self.model[self.last_rotation[0]].rotated_at
        assert rotated_at is not None
        self.clock.now = max(self.clock.now, rotated_at + self.grace + offset)

    @rule(token=tokens)
    def revoke(self, token: str) -> None:
        family = self.families[self.model[token].family]
        self.run(self.config.backend.revoke_family(self.model[token].family, family.expires_at))
        family.revoked = True

    @rule(subject=st.sampled_from(SUBJECTS), active=st.booleans())
    def set_subject_active(self, subject: str, active: bool) -> None:
        (self.hooks.disabled.discard if active else self.hooks.disabled.add)(subject)

    @rule(seconds=st.sampled_from([0, 0.5, 1, 5, 9.5, 10, 30, 60, 99.5, 100]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # ------------------------------------------------------------- the model

    def _refresh(self, token: str, client_id: str, requested: str | None) -> Any:
        before = len(self.hooks.events)
        response: httpx.Response = self.run(self.env.refresh(token, client_id=client_id, scope=requested))
        events = self.hooks.events[before:]
        expected = self._expect(token, client_id, requested)
        kind = expected[0]
        event(f"refresh: {kind} {expected[1] if kind == 'error' else ''}".strip())
        body = response.json()
        if kind == "error":
            assert response.status_code == 400, (expected, body)
            assert body["error"] == expected[1], (expected, body)
            assert not [e for e in events if e.name == REFRESH_REUSE_DETECTED]
            return multiple()
        if kind == "reuse":
            assert response.status_code == 400, (expected, body)
            assert body["error"] == "invalid_grant", (expected, body)
            assert [e.name for e in events][:2] == [REFRESH_REUSE_DETECTED, FAMILY_REVOKED]
            self.families[self.model[token].family].revoked = True
            return multiple()
        assert response.status_code == 200, (expected, body)
        t = self.model[token]
        scope = expected[1]
        assert body["scope"] == " ".join(scope)
        claims = jwt_claims(body["access_token"])
        family = self.families[t.family]
        assert claims["sub"] == family.subject
        assert claims["client_id"] == client_id
        assert claims["scope"] == " ".join(scope)
        assert claims["aud"] == API
        assert claims["exp"] == min(int(self.clock.now) + AT_TTL, int(family.expires_at))
        [rotated] = [e for e in events if e.name == REFRESH_ROTATED]
        if kind == "retry":
            assert rotated.data["grace_retry"] is True
            assert body["refresh_token"] == t.successor
            return multiple()
        assert rotated.data["grace_retry"] is False
        new = body["refresh_token"]
        assert new not in self.model
        now = self.clock.now
        t.rotated_at, t.successor, t.rotated_for = now, new, frozenset(scope)
        self.model[new] = Token(
            new, t.family, t.client_id, t.scope, t.generation + 1, min(now + TOKEN_TTL, family.expires_at)
        )
        self.last_rotation = (token, client_id, requested)
        return new

    def _expect(self, token: str, client_id: str, requested: str | None) -> tuple[Any, ...]:
        t = self.model[token]
        family = self.families[t.family]
        now = self.clock.now
        if family.revoked or now >= t.expires_at:
            return ("error", "invalid_grant")
        scope = narrow(requested, t.scope)
        active = family.subject not in self.hooks.disabled
        if t.rotated_at is None:
            if t.client_id != client_id:
                return ("error", "invalid_grant")
            if scope is None:
                return ("error", "invalid_scope")
            if not active:
                return ("error", "invalid_grant")
            return ("rotate", scope)
        assert t.successor is not None
        successor = self.model[t.successor]
        retry = (
            self.grace > 0
            and now - t.rotated_at < self.grace
            and t.client_id == client_id
            and scope is not None
            and active
            and frozenset(scope) == t.rotated_for
            and successor.rotated_at is None
        )
        return ("retry", scope) if retry else ("reuse",)

    # ------------------------------------------------------------- invariants

    @invariant()
    def store_agrees_with_the_model(self) -> None:
        now = self.clock.now
        for t in self.model.values():
            record = self.run(record_of(self.config, t.token))
            if self.families[t.family].revoked or now >= t.expires_at:
                assert record is None, t
                continue
            assert record is not None, t
            assert (record.rotated_at is None) == (t.rotated_at is None), t
            assert record.generation == t.generation
            assert record.expires_at == t.expires_at
            assert record.scope == t.scope

    @invariant()
    def never_two_live_branches(self) -> None:
        store = self.config.backend
        assert isinstance(store, MemoryStore)
        now = self.clock.now
        live: dict[str, int] = {}
        for (family, _), record in store._refresh.items():
            if record.rotated_at is None and record.expires_at > now:
                live[family] = live.get(family, 0) + 1
        assert all(n == 1 for n in live.values()), live


_SETTINGS = settings(
    max_examples=examples(250),
    stateful_step_count=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class StrictMachine(RefreshMachine):
    grace = 0


class GraceMachine(RefreshMachine):
    grace = 10


TestStrictRotation = StrictMachine.TestCase
TestStrictRotation.settings = _SETTINGS
TestGraceWindow = GraceMachine.TestCase
TestGraceWindow.settings = _SETTINGS

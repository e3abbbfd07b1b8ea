"""``RedisStore``: the attesto-asgi ``Store`` on Redis (redis.asyncio, one connection pool).

Every state change is one Lua script or one native atomic command (LESSONS: "one Lua
script or GETDEL in Redis"). Every key carries a TTL: a record expires with the record
(``PEXPIREAT`` on its absolute expiry), so Redis drops expired state by itself.

Key layout (``P`` is the prefix; ``{...}`` is the Redis Cluster hash tag):

- ``P:code:<code_hash>``: hash ``r`` (record), ``f``/``c`` (family, client), ``u``
  (tombstone end, ms), ``t`` (taken). One key per script.
- ``{P:<family_id>}:rt:<token_hash>``: hash ``r`` (record as put) and, once rotated,
  ``ra`` (rotated_at), ``sh`` (successor hash), ``ss`` (sealed successor).
- ``{P:<family_id>}:revoked``: the family's sticky revoked marker.
- ``{P:jti:<jti>}:revoked``: one revoked access token. (An access token's family is not
  stored: the token carries it as its signed ``fid`` claim.)
- ``P:claim:<key>``: the replay cache.

A rotation reads the *existing* successor of an already rotated token by a key name it
builds from the stored hash; that key carries the same family hash tag, so it is in the
script's slot and Redis Cluster runs it unchanged. The one read that spans two slots (an
access token's revoked marker and its family's) is two single-key commands sent in one
pipeline: one round trip, and each command goes to its own slot's node under Cluster.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from attesto_asgi.errors import StoreUnavailable
from attesto_asgi.model import (
    AlreadyRotated,
    CodeRecord,
    CodeReused,
    FamilyRevoked,
    RefreshRecord,
    RefreshUnknown,
    Rotated,
)
from attesto_asgi.store import RotateResult

__all__ = ["RedisStore", "open_redis_store", "parse_redis_url"]

log = logging.getLogger("attesto_asgi.redis")

T = TypeVar("T")
Clock = Callable[[], float]

DEFAULT_PREFIX: Final = "attesto"

# The errors that mean "Redis could not be reached"; the outcome is unknown or not applied.
_UNREACHABLE: Final = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError)

# ---------------------------------------------------------------- scripts

_PUT_CODE: Final = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'u', ARGV[3], 'f', ARGV[4], 'c', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"""

# Taken once: the record is dropped, the key becomes a tombstone until reuse_detect_until.
_TAKE_CODE: Final = """
local v = redis.call('HMGET', KEYS[1], 'r', 'u', 'f', 'c', 't')
if not v[3] then return false end
if v[5] then return {'reused', v[3], v[4]} end
redis.call('HDEL', KEYS[1], 'r')
redis.call('HSET', KEYS[1], 't', '1')
redis.call('PEXPIREAT', KEYS[1], v[2])
return {'taken', v[1]}
"""

# Sticky: a live marker is only ever extended; the call that created it answers 1.
_REVOKE_UNTIL: Final = """
local exp = redis.call('PEXPIRETIME', KEYS[1])
if exp == -2 then
  redis.call('SET', KEYS[1], '1', 'PXAT', ARGV[1])
  return 1
end
if exp >= 0 and tonumber(ARGV[1]) > exp then redis.call('PEXPIREAT', KEYS[1], ARGV[1]) end
return 0
"""

_PUT_REFRESH: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'r', ARGV[1])
redis.call('PEXPIREAT', KEYS[2], ARGV[2])
return 1
"""

_GET_REFRESH: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
return redis.call('HMGET', KEYS[2], 'r', 'ra', 'sh', 'ss')
"""

# The compare-and-set: revoked family first, then unknown, then already rotated; else mark
# the old token and store the successor in the same script.
_ROTATE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'revoked'} end
local v = redis.call('HMGET', KEYS[2], 'r', 'ra', 'sh', 'ss')
if not v[1] then return {'unknown'} end
if v[2] then
  local succ = ARGV[7] .. v[3]
  local used = 0
  if redis.call('EXISTS', succ) == 0 or redis.call('HEXISTS', succ, 'ra') == 1 then used = 1 end
  local has_ss = 0
  if v[4] then has_ss = 1 end
  return {'already', v[1], v[2], v[3], v[4] or '', has_ss, used}
end
redis.call('HSET', KEYS[2], 'ra', ARGV[1], 'sh', ARGV[2])
if ARGV[3] == '1' then redis.call('HSET', KEYS[2], 'ss', ARGV[4]) end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 'r', ARGV[5])
redis.call('PEXPIREAT', KEYS[3], ARGV[6])
return {'rotated', v[1]}
"""

# ---------------------------------------------------------------- small pure helpers

_code_decoder: Final = msgspec.msgpack.Decoder(CodeRecord)
_refresh_decoder: Final = msgspec.msgpack.Decoder(RefreshRecord)
_encode: Final = msgspec.msgpack.encode


def parse_redis_url(url: str) -> tuple[str, str]:
    """``(client_url, prefix)``: our ``prefix`` option taken out of the query string."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis URL: scheme {parts.scheme!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [v for k, v in query if k == "prefix"]
    prefix = prefixes[-1] if prefixes else DEFAULT_PREFIX
    if not prefix or any(c in prefix for c in "{}*?[] "):
        raise ValueError("redis prefix must be non-empty, without braces, glob characters or spaces")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def _ms(t: float) -> int:
    """Epoch seconds to the epoch milliseconds Redis expiry commands take."""
    return round(t * 1000)


def _family_tag(prefix: str, family_id: str) -> str:
    return "{" + prefix + ":" + family_id + "}"


def _refresh_prefix(prefix: str, family_id: str) -> str:
    return _family_tag(prefix, family_id) + ":rt:"


def _revoked_key(prefix: str, family_id: str) -> str:
    return _family_tag(prefix, family_id) + ":revoked"


def _jti_tag(prefix: str, jti: str) -> str:
    return "{" + prefix + ":jti:" + jti + "}"


def _refresh_record(fields: list[Any]) -> RefreshRecord | None:
    blob, rotated_at, successor_hash, sealed = fields
    if blob is None:
        return None
    record = _refresh_decoder.decode(blob)
    if rotated_at is None:
        return record
    return msgspec.structs.replace(
        record,
        rotated_at=float(rotated_at),
        successor_hash=successor_hash.decode(),
        sealed_successor=bytes(sealed) if sealed is not None else None,
    )


def _rotate_result(family_id: str, reply: list[Any]) -> RotateResult:
    kind = reply[0]
    if kind == b"rotated":
        return Rotated(record=_refresh_decoder.decode(reply[1]))
    if kind == b"revoked":
        return FamilyRevoked(family_id=family_id)
    if kind == b"unknown":
        return RefreshUnknown()
    _, blob, rotated_at, successor_hash, sealed, has_sealed, used = reply
    record = _refresh_record([blob, rotated_at, successor_hash, sealed if has_sealed else None])
    assert record is not None
    return AlreadyRotated(record=record, successor_used=bool(used))


# ---------------------------------------------------------------- the store


class RedisStore:
    """A ``Store`` on Redis. ``clock`` supplies ``rotated_at``; Redis keeps expiry itself."""

    def __init__(self, url: str, *, clock: Clock = time.time) -> None:
        client_url, self.prefix = parse_redis_url(url)
        self._clock = clock
        # No automatic retries: a retried script whose first reply was lost would run twice
        # (a redemption would come back as a reuse report). Errors surface; we reconnect.
        # A blocking pool: a request finding every connection busy waits for one (at most
        # ``timeout``) instead of failing; redis-py's default pool raises MaxConnectionsError
        # past 100 connections, a 503 for any worker with over 100 requests in flight.
        pool = aioredis.BlockingConnectionPool.from_url(
            client_url,
            # Defaults; the URL's own socket_timeout / socket_connect_timeout / max_connections win.
            socket_connect_timeout=1.0,
            socket_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
            max_connections=64,
            timeout=2.0,
        )
        self.client: aioredis.Redis = aioredis.Redis.from_pool(pool)
        c = self.client
        self._put_code = c.register_script(_PUT_CODE)
        self._take_code = c.register_script(_TAKE_CODE)
        self._revoke_until = c.register_script(_REVOKE_UNTIL)
        self._put_refresh = c.register_script(_PUT_REFRESH)
        self._get_refresh = c.register_script(_GET_REFRESH)
        self._rotate = c.register_script(_ROTATE)

    async def _call(self, make: Callable[[], Awaitable[T]], *, idempotent: bool = False) -> T:
        """Run one Redis call; unreachable Redis becomes ``StoreUnavailable``.

        Stale pooled connections (after a Redis restart) are dropped on the first failure;
        only idempotent calls are retried once on a fresh connection.
        """
        tries = 2 if idempotent else 1
        for attempt in range(tries):
            try:
                return await make()
            except _UNREACHABLE as exc:
                with contextlib.suppress(Exception):
                    await self.client.connection_pool.disconnect(inuse_connections=False)
                if attempt + 1 < tries and isinstance(exc, RedisConnectionError):
                    continue
                log.warning("redis store unavailable: %s", type(exc).__name__)
                raise StoreUnavailable(f"redis store unavailable: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------- replay cache
    async def claim_once(self, key: str, ttl: float) -> bool:
        name = f"{self.prefix}:claim:{key}"
        ms = max(1, round(ttl * 1000))
        return bool(await self._call(lambda: self.client.set(name, b"1", nx=True, px=ms)))

    # ------------------------------------------------------------- families
    async def revoke_family(self, family_id: str, until: float) -> bool:
        keys = [_revoked_key(self.prefix, family_id)]
        return bool(await self._call(lambda: self._revoke_until(keys=keys, args=[_ms(until)])))

    async def family_revoked(self, family_id: str) -> bool:
        key = _revoked_key(self.prefix, family_id)
        return bool(await self._call(lambda: self.client.exists(key), idempotent=True))

    # ------------------------------------------------------------- access tokens
    async def revoke_access_token(self, jti: str, expires_at: float) -> None:
        keys = [_jti_tag(self.prefix, jti) + ":revoked"]
        await self._call(lambda: self._revoke_until(keys=keys, args=[_ms(expires_at)]), idempotent=True)

    async def access_token_revoked(self, jti: str, family_id: str | None) -> bool:
        jti_key = _jti_tag(self.prefix, jti) + ":revoked"
        if family_id is None:
            return bool(await self._call(lambda: self.client.exists(jti_key), idempotent=True))
        family_key = _revoked_key(self.prefix, family_id)

        async def both() -> list[Any]:
            # Two slots: not one multi-key command (CROSSSLOT under Cluster), but two
            # single-key reads in one non-transactional pipeline, one round trip.
            pipe = self.client.pipeline(transaction=False)
            pipe.exists(jti_key)
            pipe.exists(family_key)
            return await pipe.execute()

        jti_revoked, family_revoked = await self._call(both, idempotent=True)
        return bool(jti_revoked or family_revoked)

    # ------------------------------------------------------------- codes
    async def put_code(self, record: CodeRecord) -> None:
        keys = [f"{self.prefix}:code:{record.code_hash}"]
        args: list[EncodableT] = [
            _encode(record),
            _ms(record.expires_at),
            _ms(max(record.expires_at, record.reuse_detect_until)),
            record.family_id,
            record.client_id,
        ]
        await self._call(lambda: self._put_code(keys=keys, args=args), idempotent=True)

    async def take_code(self, code_hash: str) -> CodeRecord | CodeReused | None:
        keys = [f"{self.prefix}:code:{code_hash}"]
        reply = await self._call(lambda: self._take_code(keys=keys))
        if not reply:
            return None
        if reply[0] == b"taken":
            return _code_decoder.decode(reply[1])
        return CodeReused(family_id=reply[1].decode(), client_id=reply[2].decode())

    # ------------------------------------------------------------- refresh tokens
    async def put_refresh(self, record: RefreshRecord) -> bool:
        fam = record.family_id
        keys = [_revoked_key(self.prefix, fam), _refresh_prefix(self.prefix, fam) + record.token_hash]
        args: list[EncodableT] = [_encode(record), _ms(record.expires_at)]
        return bool(await self._call(lambda: self._put_refresh(keys=keys, args=args), idempotent=True))

    async def get_refresh(self, family_id: str, token_hash: str) -> RefreshRecord | None:
        keys = [_revoked_key(self.prefix, family_id), _refresh_prefix(self.prefix, family_id) + token_hash]
        reply = await self._call(lambda: self._get_refresh(keys=keys), idempotent=True)
        return _refresh_record(reply) if reply else None

    async def rotate_refresh(
        self, family_id: str, old_hash: str, successor: RefreshRecord, sealed: bytes | None
    ) -> RotateResult:
        if successor.family_id != family_id:
            raise ValueError("a successor stays in its predecessor's family")
        rt = _refresh_prefix(self.prefix, family_id)
        keys = [_revoked_key(self.prefix, family_id), rt + old_hash, rt + successor.token_hash]
        args: list[EncodableT] = [
            repr(self._clock()),
            successor.token_hash,
            b"1" if sealed is not None else b"0",
            sealed if sealed is not None else b"",
            _encode(successor),
            _ms(successor.expires_at),
            rt,
        ]
        reply = await self._call(lambda: self._rotate(keys=keys, args=args))
        return _rotate_result(family_id, reply)

    async def aclose(self) -> None:
        await self.client.aclose()


def open_redis_store(url: str) -> RedisStore:
    """Entry points ``redis`` and ``rediss``: ``open_store("redis://127.0.0.1:6379/0?prefix=a")``."""
    return RedisStore(url)

"""attesto-asgi-redis: the Redis ``Store`` backend (entry points ``redis`` and ``rediss``)."""

from ._store import RedisStore, open_redis_store, parse_redis_url

__all__ = ["RedisStore", "open_redis_store", "parse_redis_url"]

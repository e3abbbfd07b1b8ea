"""An example third-party attesto-asgi store backend: PostgreSQL through asyncpg."""

from ._store import TABLES, PostgresStore, open_postgres_store, parse_postgres_url

__all__ = ["TABLES", "PostgresStore", "open_postgres_store", "parse_postgres_url"]

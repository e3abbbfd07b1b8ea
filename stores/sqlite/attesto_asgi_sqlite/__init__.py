"""attesto-asgi-sqlite: the SQLite ``Store`` backend (entry point ``sqlite``)."""

from ._store import SCHEMA_VERSION, SQLiteOptions, SQLiteStore, open_sqlite_store, parse_sqlite_url

__all__ = ["SCHEMA_VERSION", "SQLiteOptions", "SQLiteStore", "open_sqlite_store", "parse_sqlite_url"]

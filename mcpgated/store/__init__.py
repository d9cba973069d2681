"""
Persistent state behind a small interface (L{IApiStore}), so that a shared
database can replace the embedded SQLite file without touching callers.

L{PostgresApiStore} is imported when first named: psycopg (and libpq) load
only in a daemon that uses PostgreSQL.
"""

from typing import TYPE_CHECKING, Any

from mcpgated.store._interface import Closed, Conflict, IApiStore, NotFound, Unavailable
from mcpgated.store._sqlite import SQLiteApiStore

if TYPE_CHECKING:
    from mcpgated.store._postgres import PostgresApiStore

__all__ = ["IApiStore", "NotFound", "Conflict", "Closed", "Unavailable", "SQLiteApiStore",
           "PostgresApiStore"]


def __getattr__(name: str) -> Any:
    if name == "PostgresApiStore":
        from mcpgated.store._postgres import PostgresApiStore

        return PostgresApiStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

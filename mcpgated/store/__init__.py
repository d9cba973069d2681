"""
Persistent state behind a small interface (L{IApiStore}), so that a shared
database can replace the embedded SQLite file without touching callers.
"""

from mcpgated.store._interface import Closed, Conflict, IApiStore, NotFound, Unavailable
from mcpgated.store._postgres import PostgresApiStore
from mcpgated.store._sqlite import SQLiteApiStore

__all__ = ["IApiStore", "NotFound", "Conflict", "Closed", "Unavailable", "SQLiteApiStore",
           "PostgresApiStore"]

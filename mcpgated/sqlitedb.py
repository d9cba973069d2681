"""
Opening a SQLite file the way every mcpgated store does: WAL, full sync,
and the package's numbered migration scripts applied in order.
"""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path
from typing import List, Tuple

from mcpgated.files import SECRET_DIR, SECRET_FILE, create_file, make_dirs


def migrations(package: str) -> List[Tuple[int, str]]:
    folder = resources.files(package) / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8")))
    return sorted(found)


def open_database(path: Path, package: str, synchronous: str = "FULL") -> Tuple[sqlite3.Connection, int]:
    """
    Open (creating folders as needed) and migrate. Blocking: call it from
    the store's own thread.

    @return: the connection (autocommit mode; callers BEGIN/COMMIT) and the
        schema version.
    """
    make_dirs(path.parent, SECRET_DIR)
    # 0600 whatever the umask; SQLite gives the -wal, -shm and -journal
    # files it creates the database file's mode.
    create_file(path, SECRET_FILE)
    connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                 timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute("PRAGMA foreign_keys=ON")
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    for number, script in migrations(package):
        if number <= version:
            continue
        try:
            connection.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        version = number
    return connection, version

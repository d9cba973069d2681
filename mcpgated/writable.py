"""
Can the daemon write every path its configuration names? Checked by
C{--check-config} (systemd's ExecStartPre, which runs in the unit's
sandbox: C{ProtectSystem=strict} makes all but the unit's own folders
read-only) and again when the daemon starts, so a path it cannot write is
one line naming the section and key, not a store that silently fails.

A check leaves nothing behind: a folder that does not exist yet is judged
by the nearest one that does (the daemon creates the rest), and writing is
tried with an anonymous temporary file, which is what the daemon's own
writes will meet (C{access(2)} says yes to root on a folder it cannot
create entries in, such as C{/proc}).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

from mcpgated.config import Config, ConfigError


def written_paths(cfg: Config) -> List[Tuple[str, str, Path, bool]]:
    """
    (section, key, path, is a folder) of everything the daemon writes.
    The generated admin token and the SQLite -wal/-shm files live in the
    database's folder, checked with it.
    """
    paths: List[Tuple[str, str, Path, bool]] = [("storage", "path", cfg.storage.path, False)]
    if cfg.analytics.enabled and cfg.analytics.url is None:
        paths.append(("analytics", "path", cfg.analytics.path, False))
    if cfg.logging.dir is not None:
        paths.append(("logging", "dir", cfg.logging.dir, True))
    if cfg.daemon.ports_file is not None:
        paths.append(("daemon", "ports_file", cfg.daemon.ports_file, False))
    return paths


def _creatable(folder: Path) -> Optional[str]:
    """
    Why entries cannot be created in C{folder} (or a new folder below it),
    or None.
    """
    current = folder
    while True:
        try:
            exists = current.is_dir() or current.exists()
        except OSError as e:  # a path through a file: ENOTDIR
            return f"{current}: {e.strerror}"
        if exists:
            break
        if current.parent == current:
            return f"{current}: does not exist"
        current = current.parent
    if not current.is_dir():
        return f"{current} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=current):
            pass
    except OSError as e:
        return f"{current} is not writable ({e.strerror})"
    return None


def _problem(path: Path, folder: bool) -> Optional[str]:
    if folder:
        if path.exists() and not path.is_dir():
            return f"{path} is not a folder"
        return _creatable(path)
    if path.is_dir():
        return f"{path} is a folder, not a file"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    # the file's folder must take new entries: the database's -wal and
    # -shm files, the ports file's temporary
    return _creatable(path.parent)


def unwritable(cfg: Config) -> List[ConfigError]:
    """
    One error (naming the section and key) per path the daemon would fail
    to write.
    """
    source = str(cfg.source) if cfg.source is not None else None
    errors = []
    for section, key, path, folder in written_paths(cfg):
        why = _problem(path, folder)
        if why is not None:
            errors.append(ConfigError(f"cannot write {path}: {why}", source, section, key))
    return errors

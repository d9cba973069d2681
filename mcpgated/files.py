"""
Files and folders the daemon creates for itself, with modes that do not
depend on the umask it was started with: the databases, the generated
admin token and their folder are the service user's alone (0600, 0700),
log files and their folder may be read by its group (0640, 0750).

Only what is created here gets these modes: a file or folder that already
exists keeps the mode its operator gave it.
"""

from __future__ import annotations

import os
from pathlib import Path

SECRET_FILE = 0o600
SECRET_DIR = 0o700
LOG_FILE = 0o640
LOG_DIR = 0o750


def make_dirs(path: Path, mode: int) -> None:
    """
    Create C{path} and its missing parents, each with C{mode} (the umask
    notwithstanding); existing folders are left as they are.
    """
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, mode)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs
        os.chmod(folder, mode)


def create_file(path: Path, mode: int) -> bool:
    """
    Create C{path} empty with C{mode} (the umask notwithstanding) unless it
    exists; a symbolic link is never followed to create its target.

    @return: whether the file was created.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return True

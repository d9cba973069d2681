"""
Files and folders the daemon creates (L{mcpgated.files}) get their modes
whatever the umask it was started with; what exists keeps its own.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterator

import pytest

from mcpgated.files import LOG_DIR, LOG_FILE, SECRET_DIR, SECRET_FILE, create_file, make_dirs


@pytest.fixture(params=[0o000, 0o022, 0o077, 0o777], ids=lambda m: f"umask{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_modes_are_the_service_user_s_or_its_group_s() -> None:
    assert (SECRET_FILE, SECRET_DIR, LOG_FILE, LOG_DIR) == (0o600, 0o700, 0o640, 0o750)


@pytest.mark.parametrize("file_mode", [SECRET_FILE, LOG_FILE])
def test_a_created_file_has_its_mode(umask: int, tmp_path: Path, file_mode: int) -> None:
    path = tmp_path / "admin.token"
    assert create_file(path, file_mode) is True
    assert mode(path) == file_mode
    assert path.read_bytes() == b""


@pytest.mark.parametrize("dir_mode", [SECRET_DIR, LOG_DIR])
def test_missing_folders_get_the_mode_each(umask: int, tmp_path: Path, dir_mode: int) -> None:
    make_dirs(tmp_path / "var" / "lib" / "mcpgated", dir_mode)
    for folder in ("var", "var/lib", "var/lib/mcpgated"):
        assert mode(tmp_path / folder) == dir_mode, folder


def test_existing_files_and_folders_keep_their_mode_and_content(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    path = tmp_path / "mcpgated.db"
    path.write_bytes(b"data")
    os.chmod(path, 0o644)
    assert create_file(path, SECRET_FILE) is False
    assert (mode(path), path.read_bytes()) == (0o644, b"data")
    make_dirs(tmp_path / "logs", LOG_DIR)
    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "logs") == LOG_DIR


def test_a_symbolic_link_is_never_followed_to_create_its_target(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "admin.token"
    link.symlink_to(target)
    assert create_file(link, SECRET_FILE) is False
    assert not target.exists()

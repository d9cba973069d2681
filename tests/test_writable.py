"""
L{mcpgated.writable} in memory: which configured paths it finds unwritable,
and that checking leaves nothing behind. (The daemon refusing to start on
them, under twistd, is tests/test_state_paths.py.)
"""

from __future__ import annotations

from pathlib import Path

from mcpgated.config import parse_text
from mcpgated.writable import unwritable, written_paths


def _config(tmp_path: Path, **paths: str) -> str:
    return (f"[storage]\npath = {paths.get('storage', tmp_path / 'state' / 'mcpgated.db')}\n"
            f"[logging]\ndir = {paths.get('logs', tmp_path / 'log')}\n"
            f"[daemon]\nports_file = {paths.get('ports', tmp_path / 'run' / 'ports.json')}\n")


def test_paths_that_do_not_exist_yet_are_judged_by_their_nearest_folder(tmp_path: Path) -> None:
    cfg = parse_text(_config(tmp_path), base=tmp_path)
    assert unwritable(cfg) == []
    assert [(s, k) for s, k, _, _ in written_paths(cfg)] == [
        ("storage", "path"), ("analytics", "path"), ("logging", "dir"), ("daemon", "ports_file")]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created by the check


def test_each_unwritable_path_is_one_error_naming_its_key(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cfg = parse_text(_config(tmp_path, storage=str(a_file / "mcpgated.db"), logs=str(a_file),
                             ports=str(tmp_path)), base=tmp_path)
    errors = {(e.section, e.key): str(e) for e in unwritable(cfg)}
    assert set(errors) == {("storage", "path"), ("analytics", "path"), ("logging", "dir"),
                           ("daemon", "ports_file")}
    assert "is not a folder" in errors[("logging", "dir")]
    assert "is a folder, not a file" in errors[("daemon", "ports_file")]


def test_proc_takes_no_new_files_even_for_root(tmp_path: Path) -> None:
    cfg = parse_text(_config(tmp_path, logs="/proc/mcpgated-logs"), base=tmp_path)
    assert [(e.section, e.key) for e in unwritable(cfg)] == [("logging", "dir")]

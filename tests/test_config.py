"""
The INI configuration: documented defaults, located error messages, value
parsers, and C{twistd mcpgated -c FILE --check-config} as an operator runs it.
"""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

import pytest
from twisted.logger import LogLevel

from mcpgated import config
from tests.support import BIN, REPO

SHIPPED_INI = REPO / "etc" / "mcpgated.ini"


def _write(folder: Path, text: str, name: str = "mcpgated.ini") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# --- the shipped file documents every key with its default ---------------------


def test_shipped_ini_lists_every_key_with_its_default():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(SHIPPED_INI.read_text())
    shipped = {section: dict(parser[section]) for section in parser.sections()}
    assert shipped == config.defaults()


def test_every_shipped_key_has_a_comment():
    undocumented = []
    previous = ""
    for line in SHIPPED_INI.read_text().splitlines():
        if re.match(r"^\w+\s*=", line) and not previous.startswith(";"):
            undocumented.append(line)
        if line.strip():
            previous = line
    assert undocumented == []


def test_shipped_ini_means_the_same_as_an_empty_file(tmp_path):
    shipped = config.parse_text(SHIPPED_INI.read_text(), "mcpgated.ini", tmp_path)
    assert shipped == config.parse_text("", "mcpgated.ini", tmp_path)


def test_relative_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    # One rule, twistd's: etc/mcpgated.ini run from the checkout (make run)
    # keeps its files in the checkout's var/, not in etc/var/.
    folder = tmp_path / "etc"
    folder.mkdir()
    ini = _write(folder, "[admin]\ntoken_file = secrets/admin.token\n[daemon]\nports_file = ports.json\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    cfg = config.load(str(ini))
    assert cfg.storage.path == tmp_path / "var" / "mcpgated.db"
    assert cfg.analytics.path == tmp_path / "var" / "analytics.db"
    assert cfg.logging.dir == tmp_path / "var" / "log"
    assert cfg.admin.token_file == tmp_path / "secrets" / "admin.token"
    assert cfg.daemon.ports_file == tmp_path / "ports.json"
    shipped = config.load(str(SHIPPED_INI))
    assert shipped.storage.path == tmp_path / "var" / "mcpgated.db"
    assert shipped.logging.dir == tmp_path / "var" / "log"


def test_defaults_as_values(tmp_path):
    cfg = config.load(str(_write(tmp_path, "")))
    assert cfg.gateway.listen == ("tcp:8082",)
    assert cfg.gateway.public_url is None
    assert cfg.gateway.trusted_proxies == ()
    assert cfg.admin.listen == ("tcp:8083:interface=127.0.0.1",)
    assert cfg.admin.token is None and cfg.admin.token_file is None
    assert cfg.logging.level == LogLevel.info
    assert cfg.logging.max_bytes == 10 * 1024 * 1024
    assert cfg.logging.keep == 10
    assert cfg.logging.access_log is True
    assert cfg.limits.max_body == 4 * 1024 * 1024
    assert (cfg.limits.connect_timeout, cfg.limits.header_timeout,
            cfg.limits.idle_timeout) == (10.0, 60.0, 300.0)
    assert cfg.daemon.ports_file is None


def test_client_timeouts_and_http_server(tmp_path):
    cfg = config.load(str(_write(tmp_path, "")))
    assert cfg.gateway.http == "fast"
    assert (cfg.limits.client_header_timeout, cfg.limits.client_body_timeout,
            cfg.limits.keepalive_timeout) == (60.0, 60.0, 75.0)
    cfg = config.load(str(_write(tmp_path, (
        "[gateway]\nhttp = Twisted\n"
        "[limits]\nclient_header_timeout = 5s\nclient_body_timeout = 500ms\n"
        "keepalive_timeout = 2m\n"))))
    assert cfg.gateway.http == "twisted"
    assert (cfg.limits.client_header_timeout, cfg.limits.client_body_timeout,
            cfg.limits.keepalive_timeout) == (5.0, 0.5, 120.0)


def test_values_are_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths: against the working directory
    cfg = config.load(str(_write(tmp_path, (
        "[gateway]\nlisten = tcp:0:interface=127.0.0.1 tcp6:0\n"
        "public_url = https://mcp.example.com/gw/\ntrusted_proxies = 10.0.0.0/8, ::1\n"
        "[admin]\ntoken = s3cret\n"
        "[storage]\npath = /srv/mcpgated/state.db\n"
        "[logging]\ndir =\nlevel = WARN\nmax_bytes = 512KB\nkeep = 0\naccess_log = off\n"
        "[limits]\nmax_body = 1m\nconnect_timeout = 500ms\nheader_timeout = 2m\n"
        "idle_timeout = 1.5h\n"
        "[daemon]\nports_file = run/ports.json\n"
    ))))
    assert cfg.gateway.listen == ("tcp:0:interface=127.0.0.1", "tcp6:0")
    assert cfg.gateway.public_url == "https://mcp.example.com/gw"
    assert [str(n) for n in cfg.gateway.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    assert cfg.admin.token == "s3cret"
    assert "s3cret" not in repr(cfg)
    assert cfg.storage.path == Path("/srv/mcpgated/state.db")
    assert cfg.logging.dir is None
    assert cfg.logging.level == LogLevel.warn
    assert (cfg.logging.max_bytes, cfg.logging.keep, cfg.logging.access_log) == (524288, 0, False)
    assert cfg.limits.max_body == 1024 * 1024
    assert (cfg.limits.connect_timeout, cfg.limits.header_timeout,
            cfg.limits.idle_timeout) == (0.5, 120.0, 5400.0)
    assert cfg.daemon.ports_file == tmp_path / "run" / "ports.json"


# --- errors name the file, the section and the key -------------------------------

BAD = [
    # (ini text, section, key, what the message says)
    ("[gatway]\nlisten = tcp:1\n", "gatway", None, "unknown section"),
    ("[logging]\nmax_byte = 1MB\n", "logging", "max_byte", "unknown key"),
    ("[logging]\nmax_bytes = huge\n", "logging", "max_bytes", "'huge' is not a size"),
    ("[logging]\nmax_bytes = 0\n", "logging", "max_bytes", "must be greater than zero"),
    ("[logging]\nkeep = -1\n", "logging", "keep", "must not be negative"),
    ("[logging]\nkeep = ten\n", "logging", "keep", "not a whole number"),
    ("[logging]\nlevel = loud\n", "logging", "level", "'loud' is not a level"),
    ("[logging]\naccess_log = maybe\n", "logging", "access_log", "not a boolean"),
    ("[limits]\nconnect_timeout = soon\n", "limits", "connect_timeout", "not a duration"),
    ("[limits]\nidle_timeout = 0s\n", "limits", "idle_timeout", "greater than zero"),
    ("[limits]\nclient_header_timeout = soon\n", "limits", "client_header_timeout",
     "not a duration"),
    ("[limits]\nclient_body_timeout = 0\n", "limits", "client_body_timeout", "greater than zero"),
    ("[limits]\nkeepalive_timeout = -1s\n", "limits", "keepalive_timeout", "not a duration"),
    ("[gateway]\nhttp = h2\n", "gateway", "http", "'h2' is not one of fast, twisted"),
    ("[gateway]\nlisten = http:80\n", "gateway", "listen", "not a supported endpoint"),
    ("[gateway]\nlisten = tcp:eighty\n", "gateway", "listen", "not a valid endpoint"),
    ("[admin]\nlisten = tcp:0:colour=blue\n", "admin", "listen", "not a valid endpoint"),
    ("[gateway]\nlisten = ssl:0:privateKey=/nonexistent/key.pem\n", "gateway", "listen",
     "No such file"),
    ("[gateway]\nlisten =\n", "gateway", "listen", "at least one endpoint"),
    ("[gateway]\ntrusted_proxies = 10.0.0.300\n", "gateway", "trusted_proxies",
     "not an IP address or network"),
    ("[gateway]\npublic_url = mcp.example.com\n", "gateway", "public_url",
     "not an absolute http(s) URL"),
    ("[gateway]\npublic_url = https://x.example/?a=b\n", "gateway", "public_url",
     "query or fragment"),
    ("[admin]\ntoken = a\ntoken_file = b\n", "admin", "token_file", "not both"),
    ("[logging]\nkeep = 1\nkeep = 2\n", "logging", "keep", "appears twice"),
]


@pytest.mark.parametrize("text, section, key, message", BAD,
                         ids=[f"{s}.{k}:{m}" for _, s, k, m in BAD])
def test_error_names_file_section_and_key(tmp_path, text, section, key, message):
    path = _write(tmp_path, text)
    with pytest.raises(config.ConfigError) as caught:
        config.load(str(path))
    error = caught.value
    assert (error.path, error.section, error.key) == (str(path), section, key)
    where = f"{path}: [{section}]" + (f" {key}:" if key else "")
    text = str(error)
    assert text.startswith(where + " "), text
    assert message in text
    assert "\n" not in text


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.ini"
    with pytest.raises(config.ConfigError) as caught:
        config.load(str(missing))
    assert str(caught.value) == f"{missing}: file not found"


def test_text_before_first_section_is_located(tmp_path):
    path = _write(tmp_path, "listen = tcp:1\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load(str(path))
    assert str(caught.value).startswith(f"{path}: line 1")


# --- value parsers -------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("4096", 4096), ("0", 0), ("10B", 10), ("512k", 512 * 1024), ("512KB", 512 * 1024),
    ("2 KiB", 2048), ("10MB", 10 * 1024**2), ("10mb", 10 * 1024**2), ("1G", 1024**3),
    (" 3 gb ", 3 * 1024**3),
])
def test_parse_size(text, expected):
    assert config.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "1.5MB", "-1", "10 TB", "ten", "10 M B"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        config.parse_size(text)


@pytest.mark.parametrize("text, expected", [
    ("30", 30.0), ("10s", 10.0), ("500ms", 0.5), ("1.5s", 1.5), ("5m", 300.0),
    ("2h", 7200.0), ("1d", 86400.0), (" 10 S ", 10.0),
])
def test_parse_duration(text, expected):
    assert config.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "s", "10 minutes", "-5s", "1w", "5 m s"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        config.parse_duration(text)


@pytest.mark.parametrize("text, expected", [
    ("on", True), ("yes", True), ("true", True), ("1", True), ("ON", True), (" True ", True),
    ("off", False), ("no", False), ("false", False), ("0", False), ("Off", False),
])
def test_parse_bool(text, expected):
    assert config.parse_bool(text) is expected


@pytest.mark.parametrize("text", ["", "y", "enabled", "2"])
def test_parse_bool_refuses(text):
    with pytest.raises(ValueError):
        config.parse_bool(text)


# --- twistd mcpgated -c FILE --check-config -------------------------------------------


def _twistd(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "twistd"), *args], cwd=str(cwd), capture_output=True,
                          text=True, timeout=60)


def test_check_config_accepts_a_valid_file(tmp_path):
    path = _write(tmp_path, "[gateway]\nlisten = tcp:0:interface=127.0.0.1\n"
                            "[admin]\ntoken = t\n[logging]\ndir = log\n")
    result = _twistd("mcpgated", "-c", str(path), "--check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{path}: configuration is valid"
    # A check only reads: no database, log folder or token appears.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mcpgated.ini"]


def test_check_config_accepts_the_shipped_file(tmp_path):
    result = _twistd("mcpgated", "-c", str(SHIPPED_INI), "--check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("text, expected", [
    ("[logging]\nmax_bytes = huge\n",
     "{path}: [logging] max_bytes: 'huge' is not a size"),
    ("[gatway]\n", "{path}: [gatway] unknown section"),
    ("[admin]\ntokn = x\n", "{path}: [admin] tokn: unknown key"),
    ("[admin]\ntoken_file = missing.token\n",
     "{path}: [admin] token_file: cannot read: No such file or directory"),
    (None, "{path}: file not found"),
], ids=["bad-value", "unknown-section", "unknown-key", "unreadable-token-file", "missing-file"])
def test_check_config_refuses_with_one_located_line(tmp_path, text, expected):
    path = tmp_path / "mcpgated.ini"
    if text is not None:
        path.write_text(text)
    result = _twistd("mcpgated", "-c", str(path), "--check-config", cwd=tmp_path)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines()
             if expected.format(path=path) in line]
    assert len(lines) == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_daemon_refuses_to_start_on_a_bad_file(tmp_path):
    path = _write(tmp_path, "[limits]\nheader_timeout = forever\n")
    result = _twistd("-n", "--pidfile=", "mcpgated", "-c", str(path), cwd=tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{path}: [limits] header_timeout: 'forever' is not a duration" in output
    assert "mcpgated ready" not in output
    assert not (tmp_path / "var").exists()

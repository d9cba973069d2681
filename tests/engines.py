"""
Real database engines for the tests: a PostgreSQL server and a Redis server,
each started in a temporary folder on a free loopback port and stopped at
the end (Debian's postgresql and redis-server packages; .ci/run installs
them).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Callable, List, Optional

import psycopg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
    return Path(found[-1]).parent


def _as_postgres_user() -> Optional[Callable[[], None]]:
    """
    initdb and postgres refuse to run as root: run them as the package's
    postgres user then.
    """
    if os.geteuid() != 0:
        return None
    user = pwd.getpwnam("postgres")

    def drop() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return drop


class PostgresServer:
    """
    A throwaway PostgreSQL cluster: trust authentication on 127.0.0.1 only,
    its unix socket in its own folder, durability off (the tests judge the
    gateway, not the engine's fsync).
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mcpgated-pg-"))
        self.port = free_port()
        self.bin = _postgres_bin()
        self._drop = _as_postgres_user()
        self._databases = 0
        if self._drop is not None:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self.data = self.folder / "data"
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                   "--no-sync", "-E", "UTF8", "--locale=C"])
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: List[str]) -> None:
        done = subprocess.run(argv, preexec_fn=self._drop, capture_output=True, text=True,
                              cwd=self.folder, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = (f"-p {self.port} -h 127.0.0.1 -k {self.folder} -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w",
                   "-l", str(self.folder / "server.log"), "start"])

    def stop(self) -> None:
        """
        Stop at once (in-flight connections are cut, as in a crash).
        """
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def new_database(self) -> str:
        """
        A fresh empty database; its URL.
        """
        self._databases += 1
        name = f"t{self._databases}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class RedisServer:
    """
    A throwaway redis-server: no persistence, loopback only.
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mcpgated-redis-"))
        self.port = free_port()
        self.config = self.folder / "redis.conf"
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\n"
            f"dir {self.folder}\nprotected-mode yes\n"
        )
        self._process: Optional[subprocess.Popen[str]] = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """
        Start (again, on the same port); returns once it accepts connections.
        """
        if self._process is not None:
            return
        process = subprocess.Popen(["redis-server", str(self.config)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError("redis-server did not start: " + "".join(seen))
        self._process = process
        # drain its output so it never blocks on a full pipe
        self._drain = subprocess.Popen(["cat"], stdin=process.stdout, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait()
        self._drain.wait()

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
            assert s.recv(64).startswith(b"+OK")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

"""A private PostgreSQL server for tests: its own cluster in a temporary directory, on a free port.

``make test`` installs Debian's ``postgresql`` package when it is missing; this module only runs
its binaries (``initdb``, ``pg_ctl``). As root, the server runs as the ``postgres`` user (PostgreSQL
refuses to run as root). Durability is off (``fsync=off``): the data is thrown away after the run.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path


class PostgresServer:
    """One running cluster; :meth:`new_database` gives each test a fresh, empty database."""

    def __init__(self, port: int, *, host_auth: str = "trust") -> None:
        if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
            raise RuntimeError("PostgreSQL is not installed: run `make test` (it installs Debian's postgresql "
                               "package), or `apt-get install postgresql`")
        self.bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                                  key=lambda p: int(Path(p).parts[4]))[-1]).parent
        self.port = port
        #: How TCP clients authenticate (pg_hba ``host`` lines): ``trust``, or ``scram-sha-256`` to make
        #: them give a password. Local (socket) clients are trusted either way.
        self.host_auth = host_auth
        self.base = Path(tempfile.mkdtemp(prefix="zuora-sync-pg-"))
        self.data = self.base / "data"
        self._names = itertools.count(1)
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")

    def start(self) -> PostgresServer:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local", "trust",
                  "--auth-host", self.host_auth, "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.base / "log"),
                  "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def create_role(self, user: str, password: str, database: str) -> None:
        """What the ``postgres`` image does with ``POSTGRES_USER``/``_PASSWORD``/``_DB``: a superuser
        with that password, and a database it owns (through the socket, as the server's owner)."""
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(host=str(self.base), port=self.port, user="postgres", dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD %s").format(sql.Identifier(user)),
                               (password,))
                cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database),
                                                                           sql.Identifier(user)))
        finally:
            conn.close()

    def new_database(self) -> str:
        """A fresh database; its SQLAlchemy URL (psycopg2, as the sync names it)."""
        import psycopg2

        name = f"zs_test_{next(self._names)}"
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {name}")
        finally:
            conn.close()
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"

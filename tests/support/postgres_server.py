"""A private PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` in a temp dir, a free port.

Like ``redis_server``, a missing binary is an error, not a skip: a green run must mean the
PostgreSQL tests ran. The server listens on 127.0.0.1 only and requires a password over TCP
(scram-sha-256), so tests go through the same password path as production (``password_env``).

``initdb`` refuses to run as root. Under root the cluster is made and run by the ``postgres``
OS user (``runuser -u postgres --``) in a directory under the system temp dir chowned to it
(pytest's own tmp dirs are private to root, so ``postgres`` could not reach them).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.redis_server import free_port

PG_USER = "postgres"
NOT_FOUND = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin: "
    "install them (apt-get install -y postgresql) or run the README's test command"
)


def bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` and ``pg_ctl``."""
    found = [
        Path(p).parent
        for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if (Path(p).parent / "pg_ctl").exists()
    ]
    if not found:
        raise RuntimeError(NOT_FOUND)
    return max(found, key=lambda p: tuple(int(n) for n in re.findall(r"\d+", p.parent.name)))


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1:``port``; superuser ``postgres``, ``password``."""

    def __init__(self, port: int | None = None, ready_timeout_s: int = 60) -> None:
        self.bin = bin_dir()
        self.port = port or free_port()
        self.ready_timeout_s = ready_timeout_s
        self.user = PG_USER
        self.password = secrets.token_urlsafe(18)
        self.directory: Path | None = None
        self._as_owner: list[str] = []
        self._owner_ids: tuple[int, int] | None = None
        self._started = False

    @property
    def data(self) -> Path:
        assert self.directory is not None
        return self.directory / "data"

    def dsn(self, dbname: str = "postgres") -> str:
        """A DSN without the password (give it through ``PGPASSWORD``/``password_env``)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def env(self) -> dict[str, str]:
        return dict(os.environ, PGPASSWORD=self.password, PGCONNECT_TIMEOUT="10")

    def start(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="tdauto-pg-"))
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(PG_USER)
            except KeyError:
                raise RuntimeError(
                    f"running as root, and initdb refuses root: it runs as the {PG_USER!r} OS "
                    "user, which does not exist; install postgresql (it creates the user)"
                ) from None
            if shutil.which("runuser") is None:
                raise RuntimeError("runuser (util-linux) not found: initdb must run as postgres")
            self._owner_ids = (owner.pw_uid, owner.pw_gid)
            os.chown(self.directory, *self._owner_ids)
            self._as_owner = ["runuser", "-u", PG_USER, "--"]
        os.chmod(self.directory, 0o700)
        pwfile = self.directory / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._owner_ids is not None:
            os.chown(pwfile, *self._owner_ids)
        self._owner_run(
            [
                str(self.bin / "initdb"),
                "--pgdata", str(self.data),
                "--username", self.user,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            "initdb",
        )
        pwfile.unlink()
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        )
        self._owner_run(
            [
                str(self.bin / "pg_ctl"),
                "--pgdata", str(self.data),
                "--log", str(self.directory / "server.log"),
                "--wait",
                f"--timeout={self.ready_timeout_s}",
                "-o", options,
                "start",
            ],
            "pg_ctl start",
        )
        self._started = True

    def stop(self) -> None:
        if self.directory is None:
            return
        try:
            if self._started:
                self._owner_run(
                    [str(self.bin / "pg_ctl"), "--pgdata", str(self.data), "-m", "fast", "stop"],
                    "pg_ctl stop",
                )
        finally:
            self._started = False
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run ``sql`` over TCP with the password; its unaligned, tuples-only output."""
        client = shutil.which("psql") or str(self.bin / "psql")
        done = subprocess.run(
            [client, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.dsn(dbname), "-c", sql],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create database ``name``; its DSN."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def _owner_run(self, argv: list[str], what: str) -> None:
        done = subprocess.run(
            [*self._as_owner, *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.ready_timeout_s + 30,
            check=False,
            cwd="/",
        )
        if done.returncode != 0:
            log = ""
            if self.directory is not None and (self.directory / "server.log").exists():
                log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{log}"
            )

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""PostgreSQL and Redis backups: writing the archive and its manifest, and restoring it.

PostgreSQL: ``pg_dump --format=custom`` writes the archive (compressed, and readable by
``pg_restore`` by hand). Restore runs ``pg_restore --single-transaction`` so a failed restore
changes nothing; with ``overwrite`` it adds ``--clean --if-exists`` (drop the backup's objects
first, then recreate them). Given ``dest``, it writes the SQL script instead (``pg_restore
--file``) for an operator to read or apply, touching no database.

Redis: ``redis-cli --rdb FILE`` asks the server for a full resync and saves the RDB it
streams. That RDB is a point-in-time snapshot made by the server's own fork (``BGSAVE``
semantics): consistent across every key and database, taken over the network without access
to the server's disk, and costing the server what one replica's sync costs. ``BGSAVE`` then
copying ``dump.rdb`` would need the server's filesystem, and a ``SCAN``+``DUMP`` walk would
not be consistent while clients write. The user needs the ``SYNC``/``PSYNC`` commands (ACL
``+sync +psync``), which some managed services refuse.
Restore, with no server stopped: the RDB is loaded by a throwaway ``redis-server`` on a unix
socket in a temp dir, and its keys are replayed into the target with ``DUMP`` +
``PTTL`` -> ``RESTORE key ttl payload REPLACE``, database by database (same numbers). Without
``overwrite`` a target database that already has keys is refused; with it, keys in the backup
replace theirs and other keys stay (``FLUSHDB`` first for an exact copy). Keys only: not
functions, ACLs or config. It needs ``redis-server`` where restore runs, not newer than the
target (``RESTORE`` refuses payloads of a newer RDB version). Given ``dest``, the RDB file is
written there for an operator to load by hand (stop the server, put it in place of its
``dump.rdb`` with ``appendonly no``, start it).

Each archive has a manifest beside it (``<archive>.manifest.json``: target, kind and the
connection without secrets), so ``restore_backup`` restores to where the backup came from
unless told otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tdauto.actions.dbconn import PostgresConn, RedisConn, connection_for, pg_tool
from tdauto.actions.process import ProcessGroup, run_command
from tdauto.actions.programs import TOOLS, checked_argv
from tdauto.errors import ActionError, InvalidInput
from tdauto.redact import redact_text

if TYPE_CHECKING:
    from tdauto.actions.backup_targets import Target
    from tdauto.actions.context import ActionContext

MANIFEST_FORMAT = "tdauto-backup-manifest/1"
PG_MAGIC = b"PGDMP"
RDB_MAGIC = b"REDIS"
REPLAY_BATCH = 500
# restores are an operator's (tdauto backup restore), not a task's: no TDAUTO_TASK_SECRETS
OPERATOR = None
_log = logging.getLogger("tdauto.restore")


def manifest_of(archive: Path) -> Path:
    return archive.with_name(archive.name + ".manifest.json")


def manifest_data(target: Target) -> dict[str, Any]:
    assert target.conn is not None
    return {
        "format": MANIFEST_FORMAT,
        "target": target.name,
        "kind": target.kind,
        "source": target.conn.manifest(),
    }


def read_manifest(archive: Path) -> dict[str, Any] | None:
    path = manifest_of(archive)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ActionError(f"{path} is not valid JSON: {exc}", "invalid") from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ActionError(f"{path} is not a tdauto backup manifest", "invalid")
    return data


# --- writing ------------------------------------------------------------------------------


def write_postgres(ctx: ActionContext, target: Target, tmp: Path) -> None:
    conn = target.conn
    assert isinstance(conn, PostgresConn)
    argv = [
        pg_tool("pg_dump"),
        "--format=custom",
        "--no-password",
        f"--file={tmp}",
        f"--dbname={conn.vetted_conninfo(ctx.settings.outbound_allow)}",
    ]
    _run_for(ctx, target, argv, conn.env(ctx.settings.task_secrets))
    _check_magic(tmp, PG_MAGIC, f"pg_dump of {target.name!r}")


def write_redis(ctx: ActionContext, target: Target, tmp: Path) -> None:
    conn = target.conn
    assert isinstance(conn, RedisConn)
    argv = [_binary("redis-cli", "redis-tools"), *conn.cli_argv(ctx.settings.outbound_allow)]
    argv += ["--rdb", str(tmp)]
    _run_for(ctx, target, argv, conn.cli_env(ctx.settings.task_secrets))
    _check_magic(tmp, RDB_MAGIC, f"redis-cli --rdb of {target.name!r}")


def _run_for(ctx: ActionContext, target: Target, argv: list[str], env: dict[str, str]) -> None:
    try:
        ctx.run(argv, programs=TOOLS, env=env)
    except ActionError as exc:
        message = redact_text(str(exc))
        raise ActionError(f"backup of {target.name!r} failed: {message}", exc.kind) from None


def _check_magic(path: Path, magic: bytes, what: str) -> None:
    with open(path, "rb") as handle:
        head = handle.read(len(magic))
    if head != magic:
        raise ActionError(f"{what} did not produce a {magic.decode()} file", "invalid")


def _binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ActionError(
            f"{name} not found on PATH: install it (apt-get install -y {package})", "not_found"
        )
    return found


# --- restoring ----------------------------------------------------------------------------


def restore_postgres(
    archive: Path,
    *,
    dsn: str | None,
    password_env: str | None,
    dest: Path | None,
    overwrite: bool,
) -> dict[str, Any]:
    """Restore a ``.pgdump`` into a database, or write its SQL script to ``dest``."""
    _check_magic(archive, PG_MAGIC, str(archive))
    tool = pg_tool("pg_restore")
    if dest is not None:

        def script(tmp: Path) -> None:
            _command([tool, f"--file={tmp}", str(archive)])

        _write_atomically(dest, overwrite, script)
        return {"restored_to": str(dest), "format": "sql"}
    conn = _connection(archive, "postgres", dsn, password_env, "dsn")
    assert isinstance(conn, PostgresConn)
    clean = ["--clean", "--if-exists"] if overwrite else []
    argv = [tool, "--no-password", "--single-transaction", *clean]
    argv += [f"--dbname={conn.conninfo()}", str(archive)]
    try:
        _command(argv, conn.env(OPERATOR))
    except ActionError as exc:
        if not overwrite and "already exists" in str(exc):
            raise ActionError(
                f"database {conn.display()} already has objects of this backup; nothing was "
                "changed. Pass overwrite=True (tdauto backup restore --overwrite) to drop and "
                "recreate them (pg_restore --clean --if-exists)",
                "conflict",
            ) from None
        raise
    return {"restored_to": conn.display(), "clean": overwrite}


def restore_redis(
    archive: Path,
    *,
    redis_url: str | None,
    password_env: str | None,
    dest: Path | None,
    overwrite: bool,
) -> dict[str, Any]:
    """Replay an ``.rdb`` backup's keys into a running server, or copy the RDB to ``dest``."""
    _check_magic(archive, RDB_MAGIC, str(archive))
    if dest is not None:
        _write_atomically(dest, overwrite, lambda tmp: shutil.copyfile(archive, tmp))
        return {"restored_to": str(dest), "format": "rdb"}
    conn = _connection(archive, "redis", redis_url, password_env, "redis_url")
    assert isinstance(conn, RedisConn)
    with _rdb_server(archive) as source:
        keyspace = cast(dict[str, Any], source(0).info("keyspace"))
        dbs = sorted(int(name[2:]) for name in keyspace)
        targets = {db: conn.client(OPERATOR, db=db) for db in dbs}
        try:
            busy = [] if overwrite else [db for db in dbs if _int(targets[db].dbsize())]
            if busy:
                raise InvalidInput(
                    "overwrite",
                    f"{conn.display()}: database(s) {', '.join(map(str, busy))} already hold "
                    "keys; pass overwrite=True (tdauto backup restore --overwrite) to replace "
                    "the keys of the backup (others stay), or flush them first",
                )
            counts = {str(db): _replay(source(db), targets[db]) for db in dbs}
        finally:
            for client in targets.values():
                client.close()
    return {"restored_to": conn.display(), "databases": counts, "keys": sum(counts.values())}


def _replay(source: redis.Redis, target: redis.Redis) -> int:
    """Copy every key of ``source`` (a static server) into ``target``; the number copied.

    ``SCAN`` may return a key twice; ``REPLACE`` makes that harmless, and the count is the
    source's ``DBSIZE``. A key whose ``DUMP`` is nil expired since the load and is skipped.
    """
    try:
        cursor = 0
        while True:
            cursor, keys = cast(tuple[int, list[bytes]], source.scan(cursor, count=REPLAY_BATCH))
            if keys:
                read = source.pipeline(transaction=False)
                for key in keys:
                    read.dump(key)
                    read.pttl(key)
                replies = read.execute()
                write = target.pipeline(transaction=False)
                for key, payload, ttl in zip(keys, replies[::2], replies[1::2], strict=True):
                    if payload is not None:
                        write.restore(key, max(int(ttl), 0), payload, replace=True)
                write.execute()
            if cursor == 0:
                return _int(source.dbsize())
    except redis.RedisError as exc:
        raise ActionError(f"restoring keys failed: {redact_text(str(exc))}", "io") from exc
    finally:
        source.close()


def _int(reply: Any) -> int:
    """A sync client's integer reply (redis-py types replies as maybe-awaitable)."""
    return int(reply)


def _connection(
    archive: Path, kind: str, given: str | None, password_env: str | None, flag: str
) -> PostgresConn | RedisConn:
    values: dict[str, Any]
    if given is not None:
        values = {"dsn" if kind == "postgres" else "url": given}
    else:
        manifest = read_manifest(archive)
        if manifest is None or manifest.get("kind") != kind:
            raise InvalidInput(
                flag,
                f"{archive.name} has no {kind} manifest beside it to say where it came from; "
                f"pass {flag}= (or dest= to get the file)",
            )
        values = dict(manifest.get("source") or {})
        values.pop("connect_timeout_s", None)
    if password_env is not None:
        values["password_env"] = password_env
    conn = connection_for(kind, values)
    assert conn is not None
    return conn


def _command(argv: list[str], env: dict[str, str] | None = None) -> None:
    try:
        run_command(
            argv,
            programs=TOOLS,
            logger=_log,
            group=ProcessGroup(),
            stop=threading.Event(),
            env=env,
        )
    except ActionError as exc:
        raise ActionError(redact_text(str(exc)), exc.kind) from None


def _write_atomically(dest: Path, overwrite: bool, produce: Callable[[Path], Any]) -> None:
    dest = Path(dest).expanduser().absolute()
    if dest.exists() and not overwrite:
        raise InvalidInput("dest", f"{dest} exists; pass overwrite=True to replace it")
    if dest.is_dir():
        raise InvalidInput("dest", f"{dest} is a directory; give a file path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.restore-{uuid.uuid4().hex[:8]}")
    try:
        produce(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _rdb_server(
    archive: Path, load_timeout_s: float = 600.0
) -> Iterator[Callable[[int], redis.Redis]]:
    """A throwaway ``redis-server`` that has loaded ``archive``, on a private unix socket;
    yields a factory of clients by database number (``SELECT`` is not sticky in a pool)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ActionError(
            "restoring a redis backup into a running server reads the RDB with a throwaway "
            "redis-server, which is not installed here: apt-get install -y redis-server, or "
            "restore with dest= to get the RDB file and load it by hand",
            "not_found",
        )
    with tempfile.TemporaryDirectory(prefix="tdauto-rdb-") as tmp:
        work = Path(tmp)
        shutil.copyfile(archive, work / "dump.rdb")
        socket_path = work / "redis.sock"
        argv = [binary, "--port", "0", "--unixsocket", str(socket_path)]
        argv += ["--unixsocketperm", "700", "--dir", str(work), "--dbfilename", "dump.rdb"]
        argv += ["--save", "", "--appendonly", "no", "--databases", "1024"]
        argv += ["--daemonize", "no", "--logfile", str(work / "redis.log")]
        proc = subprocess.Popen(
            checked_argv(argv, TOOLS, None, param="redis-server"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )

        def client(db: int) -> redis.Redis:
            return redis.Redis(
                unix_socket_path=str(socket_path), db=db, retry=Retry(NoBackoff(), 0)
            )

        try:
            _wait_loaded(proc, client(0), work / "redis.log", load_timeout_s)
            yield client
        finally:
            proc.kill()
            proc.wait()


def _wait_loaded(
    proc: subprocess.Popen[bytes], client: redis.Redis, log: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                raise ActionError(f"redis-server could not load the backup:\n{tail}", "invalid")
            with contextlib.suppress(redis.ConnectionError):  # incl. BusyLoadingError
                if client.ping():
                    return
            if time.monotonic() > deadline:
                raise ActionError(f"redis-server did not load it in {timeout_s}s", "timeout")
            time.sleep(0.05)
    finally:
        client.close()

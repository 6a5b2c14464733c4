"""Maintenance actions: ``backup`` (here, over ``backup.py``), its restore, and ``cleanup``.

Importing this module registers both actions. The archive mechanics (targets, atomic
checksummed writes, retention) live in ``tdauto.actions.backup`` and the ``cleanup`` action
in ``tdauto.actions.cleanup``; this module holds what users call: the ``backup`` params and
handler, and ``restore_backup``, which refuses any archive whose checksum does not match.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import sqlite3
import tarfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tdauto.actions.backup import (
    ARCHIVE_EXTS,
    TARGET_NAME,
    Kind,
    resolve_target,
    sha256_file,
    sidecar_of,
    write_backup,
)
from tdauto.actions.backup_db import restore_postgres, restore_redis
from tdauto.actions.backup_targets import CONN_FIELDS
from tdauto.actions.cleanup import CleanupParams, cleanup
from tdauto.actions.context import ActionContext, confine
from tdauto.actions.registry import action
from tdauto.actions.store_restore import check_dest, load_snapshot
from tdauto.errors import ActionError, InvalidInput
from tdauto.store.files import FileStore
from tdauto.store.restored import in_flight
from tdauto.units import parse_duration_s

if TYPE_CHECKING:
    from tdauto.store.backend import Store


class BackupParams(BaseModel):
    """Params of ``backup``.

    - ``target``: a named target: ``database`` (tdauto's own store) or a name from
      ``TDAUTO_BACKUP_TARGETS_FILE``. With ``kind`` it names an inline target instead, and
      defaults to the file name of ``path``.
    - ``kind`` + ``path``: an inline target; ``sqlite`` and ``directory`` need ``path``,
      ``store`` takes none.
    - ``kind: postgres`` + ``dsn`` (``postgresql://user@host:port/db``) or ``host``, ``port``,
      ``dbname``, ``user``; ``kind: redis`` + ``url`` (``redis://[user@]host:port``). Never a
      password: ``password_env`` names an environment variable of the worker holding it;
      postgres also takes ``passfile`` (a ``.pgpass`` file) or the worker's PGPASSFILE. The
      inline name defaults to the database name (postgres) or ``redis``.
    - ``dest``: directory of backups, default ``<data_dir>/backups``.
    - ``retention``: keep backups younger than this ("7days", "12h"). A unit is required so
      ``retention: 5`` is not mistaken for five backups; that is ``keep: 5``.
    - ``keep``: keep the N newest backups.

    Every path must lie in ``TDAUTO_ALLOWED_PATHS``. With ``retention`` and ``keep`` both, a
    backup is kept when either rule keeps it; with neither, nothing is pruned. Pruning touches
    only this target's folder and never the backup just written.
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    target: str = Field(default="database", description="named target, or inline target name")
    kind: Kind | None = Field(default=None, description="inline target kind")
    path: str | None = Field(default=None, description="inline target file or directory")
    dest: str | None = Field(default=None, description="backup directory")
    retention: float | None = Field(default=None, description="max age kept, seconds")
    keep: int | None = Field(default=None, ge=1, description="number of newest backups kept")
    dsn: str | None = Field(default=None, description="postgres: DSN without password")
    host: str | None = Field(default=None, description="postgres: host")
    port: int | None = Field(default=None, description="postgres: port")
    dbname: str | None = Field(default=None, description="postgres: database")
    user: str | None = Field(default=None, description="postgres: user")
    url: str | None = Field(default=None, description="redis: URL without password")
    password_env: str | None = Field(default=None, description="env variable with the password")
    passfile: str | None = Field(default=None, description="postgres: .pgpass-format file")

    def conn_values(self) -> dict[str, Any]:
        """The connection params given (postgres and redis targets)."""
        return {f: getattr(self, f) for f in CONN_FIELDS if getattr(self, f) is not None}

    @field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
            raise ValueError(
                f'retention {value!r} has no unit; give a duration such as "7days" or "12h", '
                "or use keep: N to keep the N newest backups"
            )
        try:
            return parse_duration_s(value)
        except ValueError as exc:
            raise ValueError(f"{exc}; or use keep: N for a count of backups") from None

    @field_validator("target")
    @classmethod
    def _target_name(cls, value: str) -> str:
        if not TARGET_NAME.match(value):
            raise ValueError(
                f"target {value!r} is not a valid name; use letters, digits, '_', '-', '.' "
                "(it names the folder and files of the backups)"
            )
        return value

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> BackupParams:
        if self.kind is not None and "target" not in self.model_fields_set:
            self.target = _inline_name(self.kind, self.path, self.conn_values())
        settings = (info.context or {}).get("settings")
        resolve_target(self.target, self.kind, self.path, settings, self.conn_values())
        if settings is not None:
            confine(self.dest or settings.data_path / "backups", settings.confined_paths, "dest")
        return self


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _name_from_path(path: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).name).lstrip("._-")
    return name[:100] or "backup"


def _inline_name(kind: Kind, path: str | None, conn: dict[str, Any]) -> str:
    """An inline target's default name: its file's name, its database's, or ``redis``."""
    if path:
        return _name_from_path(path)
    if kind == "redis":
        return "redis"
    dsn = str(conn.get("dsn") or "")
    found = re.search(r"(?:^|\s)dbname\s*=\s*'?([^'\s]+)", dsn)
    dbname = conn.get("dbname") or (found[1] if found else urlsplit(dsn).path.strip("/"))
    return _name_from_path(str(dbname)) if dbname else "database"


@action("backup", resource_class="storage", params=BackupParams, process_type="maintenance")
def backup(
    ctx: ActionContext,
    *,
    target: str = "database",
    kind: Kind | None = None,
    path: str | None = None,
    dest: str | None = None,
    retention: float | None = None,
    keep: int | None = None,
    **conn: Any,
) -> dict[str, Any]:
    """Back up a target into one checksummed archive, once per action, and prune older ones.

    Output: ``target``, ``kind``, ``path``, ``bytes``, ``sha256``, ``pruned`` (paths),
    ``created_at`` (ISO, UTC), ``reused`` (an earlier attempt of this action wrote it) and,
    for databases, ``source`` (the connection, without secrets).
    """
    given = {k: v for k, v in conn.items() if k in CONN_FIELDS and v is not None}
    resolved = resolve_target(target, kind, path, ctx.settings, given)
    assert resolved is not None  # with settings every target is either known or refused
    root = ctx.confine(dest or ctx.data_dir / "backups", "dest")
    return write_backup(ctx, resolved, root, retention, keep)


# --- restore ----------------------------------------------------------------------------------


def archive_kind(path: Path) -> Kind:
    """The kind of a backup, told by its extension."""
    for kind, ext in ARCHIVE_EXTS.items():
        if path.name.endswith("." + ext):
            return kind
    exts = ", ".join("." + ext for ext in ARCHIVE_EXTS.values())
    raise InvalidInput("path", f"{path.name!r} is not a tdauto backup ({exts})")


def verify_backup(path: Path) -> str:
    """The archive's sha256 if it matches its ``.sha256`` sidecar; refuse otherwise."""
    if not path.is_file():
        raise ActionError(f"backup {path} not found", "not_found")
    sidecar = sidecar_of(path)
    if not sidecar.is_file():
        raise ActionError(
            f"backup {path} has no checksum file {sidecar.name}; refusing to restore an "
            "unverifiable backup (restore from another one)",
            "integrity",
        )
    expected = (sidecar.read_text(encoding="utf-8").split() or [""])[0].lower()
    actual = sha256_file(path)
    if actual != expected:
        raise ActionError(
            f"backup {path} is corrupt or was modified: sha256 {actual} does not match "
            f"{expected or 'nothing'} in {sidecar.name}; refusing to restore it "
            "(restore from another backup)",
            "integrity",
        )
    return actual


def restore_backup(
    path: Path,
    *,
    store: Store | None = None,
    dest: Path | None = None,
    overwrite: bool = False,
    dsn: str | None = None,
    redis_url: str | None = None,
    password_env: str | None = None,
) -> dict[str, Any]:
    """Restore a backup after checking its sha256.

    A store snapshot replaces the contents of ``store`` (or, with ``dest``, of a FileStore
    there), its in-flight runs ending FAILED ``restored from backup``; this does not check
    whether a system is using that store: ``tdauto.actions.store_restore`` has the checked
    steps ``tdauto backup restore`` takes. A SQLite backup is written to the
    file ``dest``; a directory backup is extracted into ``dest`` with tarfile's ``data``
    filter (no absolute paths, no ``..``, no links leading out). An existing SQLite file or
    non-empty directory is replaced only with ``overwrite=True``; stop whatever uses it
    first. This is an operator's function: it does not confine paths.

    A PostgreSQL or Redis backup goes back to the database its manifest names, or to ``dsn``
    / ``redis_url`` (no password in them: the password comes from ``password_env``, the
    manifest's, or ``PGPASSWORD``/``PGPASSFILE``); with ``dest`` its SQL script or RDB file
    is written there instead. ``overwrite`` lets it replace what the database already holds
    (see ``tdauto.actions.backup_db``).
    """
    archive = Path(path)
    kind = archive_kind(archive)
    digest = verify_backup(archive)
    result: dict[str, Any] = {"path": str(archive), "kind": kind, "sha256": digest}
    if kind == "postgres":
        return result | restore_postgres(
            archive, dsn=dsn, password_env=password_env, dest=dest, overwrite=overwrite
        )
    if kind == "redis":
        return result | restore_redis(
            archive, redis_url=redis_url, password_env=password_env, dest=dest, overwrite=overwrite
        )
    if kind == "store":
        snapshot = load_snapshot(archive)  # refused whole before anything is replaced
        if dest is not None:
            into = FileStore(check_dest(dest, overwrite))
            into.restore(snapshot)
            restored_to = str(into.root)
        elif store is None:
            raise InvalidInput("store", "a store backup restores into a store; pass store=")
        else:
            store.restore(snapshot)
            restored_to = "store"
        tasks, executions = snapshot.get("tasks", []), snapshot.get("executions", [])
        return result | {
            "restored_to": restored_to,
            "tasks": len(tasks),
            "executions": len(executions),
            "ended_in_flight": in_flight(executions),
        }
    if dest is None:
        raise InvalidInput("dest", f"a {kind} backup restores to a path; pass dest=")
    target = Path(dest).expanduser().absolute()
    if kind == "sqlite":
        _restore_sqlite(archive, target, overwrite)
        return result | {"restored_to": str(target)}
    return result | {
        "restored_to": str(target),
        "members": _restore_directory(archive, target, overwrite),
    }


def _restore_sqlite(archive: Path, dest: Path, overwrite: bool) -> None:
    if dest.exists() and not overwrite:
        raise InvalidInput("dest", f"{dest} exists; pass overwrite=True to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.restore-{uuid.uuid4().hex[:8]}")
    try:
        with gzip.open(archive, "rb") as source, open(tmp, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        with contextlib.closing(sqlite3.connect(tmp)) as check:
            verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise ActionError(f"{archive}: restored database fails integrity_check: {verdict}")
        for stale in ("-wal", "-shm", "-journal"):  # would be replayed onto the new file
            dest.with_name(dest.name + stale).unlink(missing_ok=True)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _restore_directory(archive: Path, dest: Path, overwrite: bool) -> int:
    """Extract into ``dest``; every member is checked before anything is written."""
    if dest.exists() and not dest.is_dir():
        raise InvalidInput("dest", f"{dest} is a file; directory backups restore to a directory")
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise InvalidInput("dest", f"{dest} is not empty; pass overwrite=True to restore over it")
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            try:
                tarfile.data_filter(member, str(dest))
            except tarfile.FilterError as exc:
                raise ActionError(
                    f"{archive}: refusing to restore unsafe member {member.name!r}: {exc}",
                    "integrity",
                ) from exc
        if dest.exists() and any(dest.iterdir()):
            tar.extractall(dest, filter="data")
            return len(members)
        staging = dest.with_name(f".{dest.name}.restore-{uuid.uuid4().hex[:8]}")
        try:
            tar.extractall(staging, filter="data")
            if dest.exists():
                dest.rmdir()
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, dest)  # appears whole or not at all
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return len(members)


__all__ = [
    "BackupParams",
    "CleanupParams",
    "archive_kind",
    "backup",
    "cleanup",
    "restore_backup",
    "verify_backup",
]

"""Backup targets: the built-in ``database``, named targets from a file, inline targets.

Kinds of target and the archive each makes:

- ``store``: tdauto's own store via ``Store.snapshot()``, gzip JSON (``.json.gz``).
- ``sqlite``: a SQLite file via SQLite's online backup API, gzipped (``.sqlite.gz``).
- ``directory``: a directory tree (``.tar.gz``).
- ``postgres``: a database via ``pg_dump --format=custom`` (``.pgdump``, compressed by
  pg_dump; ``pg_restore`` reads it by hand too).
- ``redis``: a whole server's RDB snapshot via ``redis-cli --rdb`` (``.rdb``).

The targets file (``TDAUTO_BACKUP_TARGETS_FILE``, JSON or YAML) maps names to
``{kind, path}`` for files, or to the connection of a database: ``{kind: postgres, dsn}`` (or
``host``/``port``/``dbname``/``user``), ``{kind: redis, url}``, each with an optional
``password_env`` (and ``passfile`` for postgres); see ``tdauto.actions.dbconn``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tdauto.actions.context import confine
from tdauto.actions.dbconn import (
    PG_FIELDS,
    REDIS_FIELDS,
    PostgresConn,
    RedisConn,
    connection_for,
    revalidate,
)
from tdauto.errors import InvalidInput, PathNotAllowed

if TYPE_CHECKING:
    from tdauto.settings import Settings

Kind = Literal["store", "sqlite", "directory", "postgres", "redis"]
DB_KINDS = ("postgres", "redis")
ARCHIVE_EXTS: dict[Kind, str] = {
    "store": "json.gz",
    "sqlite": "sqlite.gz",
    "directory": "tar.gz",
    "postgres": "pgdump",
    "redis": "rdb",
}
TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
CONN_FIELDS = tuple(dict.fromkeys(PG_FIELDS + REDIS_FIELDS))
_FILE_SETTING = "TDAUTO_BACKUP_TARGETS_FILE"


@dataclass(frozen=True)
class Target:
    """A resolved target: ``path`` is absolute and confined (``None`` for the store and
    databases); ``conn`` is the connection of a ``postgres`` or ``redis`` target."""

    name: str
    kind: Kind
    path: Path | None
    conn: PostgresConn | RedisConn | None = None

    def describe(self) -> str:
        """Where the data comes from, for logs and outputs (no secrets)."""
        if self.conn is not None:
            return self.conn.display()
        return str(self.path) if self.path is not None else "tdauto store"


class _TargetEntry(BaseModel):
    """One entry of the targets file."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    kind: Kind
    path: str | None = None
    dsn: str | None = None
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    url: str | None = None
    password_env: str | None = None
    passfile: str | None = None

    def conn_values(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in CONN_FIELDS if getattr(self, f) is not None}


def check_kind_path(kind: str, path: str | None, field: str) -> None:
    if kind == "store" and path is not None:
        raise InvalidInput(field, "store targets take no path (they back up tdauto's own store)")
    if kind in DB_KINDS and path is not None:
        what = "dsn (or host, dbname, user)" if kind == "postgres" else "url"
        raise InvalidInput(field, f"{kind} targets take no path; give {what}")
    if kind in ("sqlite", "directory") and not path:
        raise InvalidInput(field, f"{kind} targets need a path (the file or directory to copy)")


def load_targets(settings: Settings | None) -> dict[str, Target]:
    """Named targets: the built-in ``database`` plus the targets file (which may override it).

    Relative paths in the file are relative to the file's directory. Paths are not confined
    here; ``resolve_target`` does that for the one target used.
    """
    targets = {"database": Target("database", "store", None)}
    file = settings.backup_targets_file if settings is not None else None
    if file is None:
        return targets
    try:
        text = file.read_text(encoding="utf-8")
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise InvalidInput(
            _FILE_SETTING, f"cannot read {file}: {exc.strerror}; fix the path or unset it"
        ) from exc
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(_FILE_SETTING, f"{file} is not valid JSON or YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(_FILE_SETTING, f"{file} must map names to {{kind, path}} objects")
    for name, raw in data.items():
        if not isinstance(name, str) or not TARGET_NAME.match(name):
            raise InvalidInput(
                _FILE_SETTING, f"target name {name!r} in {file}: use letters, digits, _ - ."
            )
        try:
            entry = _TargetEntry.model_validate(raw)
            check_kind_path(entry.kind, entry.path, name)
            values = entry.conn_values()
            if entry.passfile is not None:
                values["passfile"] = str((file.parent / entry.passfile).expanduser())
            conn = connection_for(entry.kind, values)
        except (ValidationError, InvalidInput) as exc:
            raise InvalidInput(_FILE_SETTING, f"target {name!r} in {file}: {exc}") from exc
        path = None if entry.path is None else (file.parent / entry.path).expanduser()
        targets[name] = Target(name, entry.kind, path, conn)
    return targets


def resolve_target(
    name: str,
    kind: Kind | None,
    path: str | None,
    settings: Settings | None,
    conn_values: dict[str, Any] | None = None,
) -> Target | None:
    """The target ``backup`` params designate, its paths confined.

    ``conn_values`` are the connection params given inline (``dsn``, ``url``, ...). ``None``
    when that cannot be told without settings (a named target other than the built-in one);
    the engine validates again with settings before the action runs.
    """
    conn_values = conn_values or {}
    context = {"settings": settings} if settings is not None else None
    if kind is None and (path is not None or conn_values):
        given = "path" if path is not None else next(iter(conn_values))
        raise InvalidInput(
            "kind", f"{given} given without kind; add kind: sqlite, directory, postgres or redis"
        )
    if kind is not None:
        check_kind_path(kind, path, "path")
        conn = connection_for(kind, conn_values, context)
        allowed = settings.confined_paths if settings is not None else None
        resolved = confine(path, allowed, "path") if path and allowed else None
        inline = Target(name, kind, resolved or (Path(path) if path else None), conn)
        named = load_targets(settings).get(name)
        named_path = named.path.resolve() if named and named.path else None
        if named is not None and (named.kind, named_path, _same(named.conn)) != (
            inline.kind,
            inline.path,
            _same(inline.conn),
        ):
            raise InvalidInput(
                "target",
                f"{name!r} is already a named target ({named.kind}); give this inline "
                "target another name with target: NAME",
            )
        return inline
    if settings is None and name != "database":
        return None
    targets = load_targets(settings)
    if name not in targets:
        file = settings.backup_targets_file if settings is not None else None
        where = f"add it to {file}" if file else f"define it in a file named by {_FILE_SETTING}"
        raise InvalidInput(
            "target",
            f"unknown backup target {name!r}; known targets: {', '.join(sorted(targets))} "
            f"({where}, or give kind and path for an inline target)",
        )
    target = targets[name]
    if settings is None:
        return target
    try:
        resolved_path = (
            confine(target.path, settings.confined_paths, "target") if target.path else None
        )
        conn = target.conn
        if conn is not None:  # again with settings: confines a passfile
            conn = revalidate(conn, context)
    except PathNotAllowed as exc:
        raise PathNotAllowed("target", f"target {name!r}: {exc.message}") from None
    except InvalidInput as exc:
        raise InvalidInput("target", f"target {name!r}: {exc}") from None
    return Target(name, target.kind, resolved_path, conn)


def _same(conn: PostgresConn | RedisConn | None) -> dict[str, Any] | None:
    return None if conn is None else conn.model_dump(exclude_none=True)

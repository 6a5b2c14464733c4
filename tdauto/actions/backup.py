"""Backup archives: named targets, atomic checksummed writes, retention.

The ``backup`` action (``tdauto.actions.maintenance``) is a thin layer over this module; the
mechanics live here so the action module stays small and restore can share the format.

A backup is one file, ``<dest>/<target>/<target>-<UTC stamp>-<suffix>.<ext>``, beside a
``.sha256`` sidecar in ``sha256sum`` format (so ``sha256sum -c`` checks it by hand too). The
suffix is a hash of ``ctx.idempotency_key``: a redelivered attempt of the same action finds
the file its first attempt finished and returns it instead of writing a second backup. The
archive is written to a hidden temp file and renamed into place, so a half-written backup
never carries a backup's name and retention never counts one.

Kinds of target:

- ``store``: tdauto's own store via ``Store.snapshot()`` (consistent by contract), gzip JSON.
- ``sqlite``: a SQLite file via SQLite's online backup API (safe while others write), gzipped.
- ``directory``: a directory tree as ``.tar.gz``.

Reading an archive back is ``tdauto.actions.maintenance.restore_backup``. Paths are confined
to ``TDAUTO_ALLOWED_PATHS`` by ``resolve_target`` (targets) and the action (``dest``); the
functions below trust the paths they are given.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tdauto.actions.context import ActionContext, confine
from tdauto.errors import ActionError, InvalidInput, PathNotAllowed

if TYPE_CHECKING:
    from tdauto.settings import Settings

Kind = Literal["store", "sqlite", "directory"]
ARCHIVE_EXTS: dict[Kind, str] = {"store": "json.gz", "sqlite": "sqlite.gz", "directory": "tar.gz"}
TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
BACKUP_NAME = re.compile(
    r"^(?P<target>.+)-(?P<stamp>\d{8}T\d{6}Z)-(?P<suffix>[0-9a-f]{8})"
    r"\.(?P<ext>json\.gz|sqlite\.gz|tar\.gz)$"
)
_STAMP = "%Y%m%dT%H%M%SZ"
_FILE_SETTING = "TDAUTO_BACKUP_TARGETS_FILE"

# --- targets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A resolved target: ``path`` is absolute and confined (``None`` for the store)."""

    name: str
    kind: Kind
    path: Path | None


class _TargetEntry(BaseModel):
    """One entry of the targets file: ``{kind, path}``."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind
    path: str | None = None


def _check_kind_path(kind: str, path: str | None, field: str) -> None:
    if kind == "store" and path is not None:
        raise InvalidInput(field, "store targets take no path (they back up tdauto's own store)")
    if kind != "store" and not path:
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
            _check_kind_path(entry.kind, entry.path, name)
        except (ValidationError, InvalidInput) as exc:
            raise InvalidInput(_FILE_SETTING, f"target {name!r} in {file}: {exc}") from exc
        path = None if entry.path is None else (file.parent / entry.path).expanduser()
        targets[name] = Target(name, entry.kind, path)
    return targets


def resolve_target(
    name: str, kind: Kind | None, path: str | None, settings: Settings | None
) -> Target | None:
    """The target ``backup`` params designate, its path confined.

    ``None`` when that cannot be told without settings (a named target other than the
    built-in one); the engine validates again with settings before the action runs.
    """
    if kind is None and path is not None:
        raise InvalidInput("kind", "path given without kind; add kind: sqlite or directory")
    if kind is not None:
        _check_kind_path(kind, path, "path")
        allowed = settings.confined_paths if settings is not None else None
        resolved = confine(path, allowed, "path") if path and allowed else None
        inline = Target(name, kind, resolved or (Path(path) if path else None))
        named = load_targets(settings).get(name)
        named_path = named.path.resolve() if named and named.path else None
        if named is not None and (named.kind, named_path) != (inline.kind, inline.path):
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
    if target.path is None or settings is None:
        return target
    try:
        return Target(name, target.kind, confine(target.path, settings.confined_paths, "target"))
    except PathNotAllowed as exc:
        raise PathNotAllowed("target", f"target {name!r}: {exc.message}") from None


# --- writing ------------------------------------------------------------------------------


def write_backup(
    ctx: ActionContext,
    target: Target,
    root: Path,
    retention_s: float | None = None,
    keep: int | None = None,
) -> dict[str, Any]:
    """Back ``target`` up under ``root/<name>/`` once per idempotency key, then prune.

    Returns the action's output: ``target``, ``kind``, ``path``, ``bytes``, ``sha256``,
    ``pruned``, ``created_at`` and ``reused`` (true when an earlier attempt wrote it).
    """
    folder = root / target.name
    folder.mkdir(parents=True, exist_ok=True)
    suffix = hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:8]
    ext = ARCHIVE_EXTS[target.kind]
    with _locked(folder / f".{target.name}-{suffix}.lock"):
        existing = _find(folder, target.name, suffix, ext)
        if existing is not None:
            ctx.logger.info("backup %s was written by an earlier attempt", existing)
            output = _describe(existing, target, reused=True)
        else:
            _remove_leftovers(folder, target.name, suffix)
            output = _write(ctx, target, folder / _stamped(target.name, suffix, ext))
    output["pruned"] = prune(folder, target.name, Path(output["path"]), retention_s, keep)
    for pruned in output["pruned"]:
        ctx.logger.info("pruned old backup %s", pruned)
    return output


def _stamped(name: str, suffix: str, ext: str) -> str:
    return f"{name}-{datetime.now(UTC).strftime(_STAMP)}-{suffix}.{ext}"


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Serialize attempts with one key (a redelivery running beside a stalled original).

    The lock file goes once a backup is in place; after a failure it stays for the retry,
    so a waiting attempt and a newcomer cannot hold two different lock files at once.
    """
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
        lock_path.unlink(missing_ok=True)


def _find(folder: Path, name: str, suffix: str, ext: str) -> Path | None:
    """The finished backup of this key (archive renamed into place), if any."""
    for candidate in sorted(folder.glob(f"{name}-*-{suffix}.{ext}")):
        if BACKUP_NAME.match(candidate.name) and sidecar_of(candidate).is_file():
            return candidate
    return None


def _remove_leftovers(folder: Path, name: str, suffix: str) -> None:
    """Temp files and orphan sidecars that a crashed attempt with this key left behind."""
    for leftover in folder.glob(f".{name}-*-{suffix}.*.tmp"):
        leftover.unlink(missing_ok=True)
    for sidecar in folder.glob(f"{name}-*-{suffix}.*.sha256"):
        if not sidecar.with_suffix("").exists():
            sidecar.unlink(missing_ok=True)


def sidecar_of(archive: Path) -> Path:
    """The ``.sha256`` file that goes with ``archive``."""
    return archive.with_name(archive.name + ".sha256")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write(ctx: ActionContext, target: Target, final: Path) -> dict[str, Any]:
    """Produce the archive in a temp file, checksum it, then rename it into place.

    The sidecar goes first: the archive's rename is the commit point, and a finished archive
    always has its checksum beside it.
    """
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    sidecar_tmp = tmp.with_name(tmp.name + ".sha256.tmp")
    producers: dict[str, Callable[[ActionContext, Target, Path], None]] = {
        "store": _write_store,
        "sqlite": _write_sqlite,
        "directory": _write_directory,
    }
    ctx.logger.info("backing up %s (%s) to %s", target.name, target.kind, final)
    try:
        producers[target.kind](ctx, target, tmp)
        _fsync(tmp)
        digest = sha256_file(tmp)
        sidecar_tmp.write_text(f"{digest}  {final.name}\n", encoding="utf-8")
        os.replace(sidecar_tmp, sidecar_of(final))
        os.replace(tmp, final)
        _fsync(final.parent)
    except OSError as exc:
        raise ActionError(f"backup of {target.name!r} failed writing {final}: {exc}", "io") from exc
    finally:
        tmp.unlink(missing_ok=True)
        sidecar_tmp.unlink(missing_ok=True)
    output = _describe(final, target, reused=False)
    ctx.logger.info("backup %s: %d bytes, sha256 %s", final.name, output["bytes"], digest)
    return output


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(archive: Path, target: Target, *, reused: bool) -> dict[str, Any]:
    match = BACKUP_NAME.match(archive.name)
    stamp = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC) if match else None
    return {
        "target": target.name,
        "kind": target.kind,
        "path": str(archive),
        "bytes": archive.stat().st_size,
        "sha256": sidecar_of(archive).read_text(encoding="utf-8").split()[0],
        "pruned": [],
        "created_at": stamp.isoformat() if stamp else None,
        "reused": reused,
    }


def _write_store(ctx: ActionContext, target: Target, tmp: Path) -> None:
    snapshot = ctx.store.snapshot()
    with gzip.open(tmp, "wt", encoding="utf-8") as out:
        json.dump(snapshot, out, separators=(",", ":"))


def _write_sqlite(ctx: ActionContext, target: Target, tmp: Path) -> None:
    assert target.path is not None
    if not target.path.is_file():
        raise ActionError(f"sqlite target {target.name!r}: {target.path} not found", "not_found")
    raw = tmp.with_name(tmp.name + ".db")
    try:
        # mode=ro: never create an empty database where the target was expected.
        src = sqlite3.connect(f"{target.path.as_uri()}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(raw)
            try:
                src.backup(dst)  # a consistent copy while other connections write
            finally:
                dst.close()
        finally:
            src.close()
        with open(raw, "rb") as source, gzip.open(tmp, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    except sqlite3.Error as exc:
        raise ActionError(
            f"sqlite target {target.name!r}: cannot back up {target.path}: {exc}", "invalid"
        ) from exc
    finally:
        raw.unlink(missing_ok=True)


def _write_directory(ctx: ActionContext, target: Target, tmp: Path) -> None:
    source = target.path
    assert source is not None
    if not source.is_dir():
        raise ActionError(f"directory target {target.name!r}: no directory {source}", "not_found")
    # Never archive the backups themselves (dest may lie inside the directory backed up).
    inside = [p for p in (tmp.parent.parent, tmp.parent) if source in p.parents]
    skip = inside[0].relative_to(source).as_posix() if inside else None

    def member(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if ctx.cancelled:
            raise ActionError(f"backup of {target.name!r} cancelled", "cancelled")
        if skip and (info.name == skip or info.name.startswith(skip + "/")):
            return None
        return info

    with tarfile.open(tmp, "w:gz") as tar:
        for child in sorted(source.iterdir()):
            tar.add(child, arcname=child.name, filter=member)


def prune(
    folder: Path,
    name: str,
    newest: Path,
    retention_s: float | None,
    keep: int | None,
    now_ts: float | None = None,
) -> list[str]:
    """Delete the backups of ``name`` in ``folder`` that no rule keeps, never ``newest``.

    Age is the file's mtime (seconds before ``now_ts``); "newest" ranks by mtime, then name.
    """
    if retention_s is None and keep is None:
        return []
    now = time.time() if now_ts is None else now_ts
    backups = []
    for candidate in folder.iterdir():
        match = BACKUP_NAME.match(candidate.name)
        if match and match["target"] == name and candidate.is_file():
            backups.append((candidate.stat().st_mtime, candidate.name, candidate))
    backups.sort(reverse=True)
    pruned: list[str] = []
    for rank, (mtime, _, candidate) in enumerate(backups):
        kept = (keep is not None and rank < keep) or (
            retention_s is not None and now - mtime < retention_s
        )
        if candidate == newest or kept:
            continue
        candidate.unlink(missing_ok=True)
        sidecar_of(candidate).unlink(missing_ok=True)
        pruned.append(str(candidate))
    return pruned

"""Backup archives: named targets, atomic checksummed writes, retention.

The ``backup`` action (``tdauto.actions.maintenance``) is a thin layer over this module; the
mechanics live here so the action module stays small and restore can share the format.

A backup is one file, ``<dest>/<target>/<target>-<UTC stamp>-<suffix>.<ext>``, beside a
``.sha256`` sidecar in ``sha256sum`` format (so ``sha256sum -c`` checks it by hand too). The
suffix is a hash of ``ctx.idempotency_key``: a redelivered attempt of the same action finds
the file its first attempt finished and returns it instead of writing a second backup. The
archive is written to a hidden temp file and renamed into place, so a half-written backup
never carries a backup's name and retention never counts one.

Targets and their kinds (``store``, ``sqlite``, ``directory``, ``postgres``, ``redis``) are in
``tdauto.actions.backup_targets``; the database kinds' producers and restores in
``tdauto.actions.backup_db``. A database backup also has a ``.manifest.json`` beside it (where
it came from, without secrets), written before the checksum so a finished backup has both.

Reading an archive back is ``tdauto.actions.maintenance.restore_backup``. Paths are confined
to ``TDAUTO_ALLOWED_PATHS`` by ``resolve_target`` (targets) and the action (``dest``); the
backup folder is then opened and written through ``tdauto.actions.paths``, so a link planted
in ``dest`` (``<dest>/<target> -> /elsewhere``) fails the backup instead of leading it out.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import gzip
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tdauto import private
from tdauto.actions.backup_db import manifest_data, manifest_of, write_postgres, write_redis
from tdauto.actions.backup_targets import (
    ARCHIVE_EXTS,
    DB_KINDS,
    TARGET_NAME,
    Kind,
    Target,
    load_targets,
    resolve_target,
)
from tdauto.actions.context import ActionContext
from tdauto.actions.paths import Folder, open_dir
from tdauto.errors import ActionError

BACKUP_NAME = re.compile(
    r"^(?P<target>.+)-(?P<stamp>\d{8}T\d{6}Z)-(?P<suffix>[0-9a-f]{8})"
    r"\.(?P<ext>json\.gz|sqlite\.gz|tar\.gz|pgdump|rdb)$"
)
_STAMP = "%Y%m%dT%H%M%SZ"

# --- writing ------------------------------------------------------------------------------


def write_backup(
    ctx: ActionContext,
    target: Target,
    root: Path,
    retention_s: float | None = None,
    keep: int | None = None,
) -> dict[str, Any]:
    """Back ``target`` up under ``root/<name>/`` once per idempotency key, then prune.

    ``root`` (the ``dest`` param, confined) and its ``<name>`` folder are opened without
    following links (``tdauto.actions.paths``), and the archive is written and old ones are
    pruned only through them: a link planted there fails the backup, naming ``dest``.

    Returns the action's output: ``target``, ``kind``, ``path``, ``bytes``, ``sha256``,
    ``pruned``, ``created_at`` and ``reused`` (true when an earlier attempt wrote it).
    """
    suffix = hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:8]
    ext = ARCHIVE_EXTS[target.kind]
    allowed = ctx.settings.confined_paths
    with (
        open_dir(root, allowed, "dest", create=True) as dest,
        dest.sub(target.name, create=True, mode=private.DIR_MODE) as folder,
    ):
        with _locked(folder, f".{target.name}-{suffix}.lock"):
            existing = _find(folder, target.name, suffix, ext)
            if existing is not None:
                ctx.logger.info("backup %s was written by an earlier attempt", existing)
                output = _describe(folder, existing, target, reused=True)
            else:
                _remove_leftovers(folder, target.name, suffix)
                output = _write(ctx, target, folder, _stamped(target.name, suffix, ext))
        newest = Path(output["path"]).name
        output["pruned"] = prune(folder, target.name, newest, retention_s, keep)
    for pruned in output["pruned"]:
        ctx.logger.info("pruned old backup %s", pruned)
    return output


def _stamped(name: str, suffix: str, ext: str) -> str:
    return f"{name}-{datetime.now(UTC).strftime(_STAMP)}-{suffix}.{ext}"


@contextlib.contextmanager
def _locked(folder: Folder, name: str) -> Iterator[None]:
    """Serialize attempts with one key (a redelivery running beside a stalled original).

    The lock file goes once a backup is in place; after a failure it stays for the retry,
    so a waiting attempt and a newcomer cannot hold two different lock files at once.
    """
    fd = folder.open_fd(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, private.FILE_MODE)
    with open(fd, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
        folder.unlink(name)


def _find(folder: Folder, name: str, suffix: str, ext: str) -> str | None:
    """The finished backup of this key (archive renamed into place), if any."""
    for candidate in sorted(fnmatch.filter(folder.names(), f"{name}-*-{suffix}.{ext}")):
        if (
            BACKUP_NAME.match(candidate)
            and folder.is_file(candidate)
            and folder.is_file(sidecar_of(Path(candidate)).name)
        ):
            return candidate
    return None


def _remove_leftovers(folder: Folder, name: str, suffix: str) -> None:
    """Temp files and orphan sidecars that a crashed attempt with this key left behind."""
    names = folder.names()
    for leftover in fnmatch.filter(names, f".{name}-*-{suffix}.*.tmp"):
        folder.unlink(leftover)
    for sidecar in fnmatch.filter(names, f"{name}-*-{suffix}.*.sha256"):
        if folder.lstat(sidecar.removesuffix(".sha256")) is None:
            folder.unlink(sidecar)
    for manifest in fnmatch.filter(names, f"{name}-*-{suffix}.*.manifest.json"):
        if folder.lstat(manifest.removesuffix(".manifest.json")) is None:
            folder.unlink(manifest)


def sidecar_of(archive: Path) -> Path:
    """The ``.sha256`` file that goes with ``archive``."""
    return archive.with_name(archive.name + ".sha256")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write(ctx: ActionContext, target: Target, folder: Folder, final: str) -> dict[str, Any]:
    """Produce the archive in a temp file, checksum it, then rename it into place.

    The producers write to a path under ``folder.pinned``, which names the open folder
    itself. The sidecar goes first: the archive's rename is the commit point, and a finished
    archive always has its checksum beside it.
    """
    tmp_name = f".{final}.{uuid.uuid4().hex[:8]}.tmp"
    tmp = folder.pinned / tmp_name
    shown = folder.path / final
    producers: dict[str, Callable[[ActionContext, Target, Path], None]] = {
        "store": _write_store,
        "sqlite": _write_sqlite,
        "directory": _write_directory,
        "postgres": write_postgres,
        "redis": write_redis,
    }
    ctx.logger.info(
        "backing up %s (%s, %s) to %s", target.name, target.kind, target.describe(), shown
    )
    try:
        folder.unlink(tmp_name)  # never write through a link planted under this name
        # 0600 before anything is written: the producers open it by name and keep its mode
        os.close(folder.open_fd(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, private.FILE_MODE))
        producers[target.kind](ctx, target, tmp)
        _fsync(tmp)
        if target.kind in DB_KINDS:
            manifest = json.dumps(manifest_data(target), indent=2)
            folder.write_text(manifest_of(Path(final)).name, manifest, private.FILE_MODE)
        digest = sha256_file(tmp)
        folder.write_text(sidecar_of(Path(final)).name, f"{digest}  {final}\n", private.FILE_MODE)
        folder.rename(tmp_name, folder, final)
        folder.fsync()
    except OSError as exc:
        raise ActionError(f"backup of {target.name!r} failed writing {shown}: {exc}", "io") from exc
    finally:
        folder.unlink(tmp_name)
    output = _describe(folder, final, target, reused=False)
    ctx.logger.info("backup %s: %d bytes, sha256 %s", final, output["bytes"], digest)
    return output


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(folder: Folder, archive: str, target: Target, *, reused: bool) -> dict[str, Any]:
    match = BACKUP_NAME.match(archive)
    stamp = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC) if match else None
    info = folder.lstat(archive)
    return {
        "target": target.name,
        "kind": target.kind,
        "path": str(folder.path / archive),
        "bytes": info.st_size if info is not None else 0,
        "sha256": folder.read_text(sidecar_of(Path(archive)).name).split()[0],
        "pruned": [],
        "created_at": stamp.isoformat() if stamp else None,
        "reused": reused,
    } | ({"source": target.describe()} if target.kind in DB_KINDS else {})


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
    here = Path(os.path.realpath(tmp.parent))  # the pinned folder's real path
    inside = [p for p in (here.parent, here) if source in p.parents]
    skip = inside[0].relative_to(source).as_posix() if inside else None

    def member(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if ctx.cancelled:
            raise ActionError(f"backup of {target.name!r} cancelled", "cancelled")
        if skip and (info.name == skip or info.name.startswith(skip + "/")):
            return None
        return info

    with (
        open_dir(source, ctx.settings.confined_paths, "path") as held,
        tarfile.open(tmp, "w:gz") as tar,
    ):
        for child in sorted(held.pinned.iterdir()):  # read through the folder held open
            tar.add(child, arcname=child.name, filter=member)


def prune(
    folder: Folder,
    name: str,
    newest: str,
    retention_s: float | None,
    keep: int | None,
    now_ts: float | None = None,
) -> list[str]:
    """Delete the backups of ``name`` in the open ``folder`` that no rule keeps, never
    ``newest``; only regular files are counted or deleted, never a link or what it points to.

    Age is the file's mtime (seconds before ``now_ts``); "newest" ranks by mtime, then name.
    """
    if retention_s is None and keep is None:
        return []
    now = time.time() if now_ts is None else now_ts
    backups = []
    for candidate in folder.names():
        match = BACKUP_NAME.match(candidate)
        info = folder.lstat(candidate) if match and match["target"] == name else None
        if info is not None and stat.S_ISREG(info.st_mode):
            backups.append((info.st_mtime, candidate))
    backups.sort(reverse=True)
    pruned: list[str] = []
    for rank, (mtime, candidate) in enumerate(backups):
        kept = (keep is not None and rank < keep) or (
            retention_s is not None and now - mtime < retention_s
        )
        if candidate == newest or kept:
            continue
        folder.unlink(candidate)
        folder.unlink(sidecar_of(Path(candidate)).name)
        folder.unlink(manifest_of(Path(candidate)).name)
        pruned.append(str(folder.path / candidate))
    return pruned


__all__ = [
    "ARCHIVE_EXTS",
    "BACKUP_NAME",
    "TARGET_NAME",
    "Kind",
    "Target",
    "load_targets",
    "prune",
    "resolve_target",
    "sha256_file",
    "sidecar_of",
    "write_backup",
]

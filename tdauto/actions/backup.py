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
from tdauto.errors import ActionError
from tdauto.private import private_dir

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

    Returns the action's output: ``target``, ``kind``, ``path``, ``bytes``, ``sha256``,
    ``pruned``, ``created_at`` and ``reused`` (true when an earlier attempt wrote it).
    """
    folder = private_dir(root / target.name)
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
    with open(lock_path, "a", opener=private.opener) as handle:
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
    for manifest in folder.glob(f"{name}-*-{suffix}.*.manifest.json"):
        if not manifest.with_name(manifest.name.removesuffix(".manifest.json")).exists():
            manifest.unlink(missing_ok=True)


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
    manifest_tmp = tmp.with_name(tmp.name + ".manifest.tmp")
    producers: dict[str, Callable[[ActionContext, Target, Path], None]] = {
        "store": _write_store,
        "sqlite": _write_sqlite,
        "directory": _write_directory,
        "postgres": write_postgres,
        "redis": write_redis,
    }
    ctx.logger.info(
        "backing up %s (%s, %s) to %s", target.name, target.kind, target.describe(), final
    )
    try:
        for path in (tmp, sidecar_tmp, manifest_tmp):  # private before anything is written
            private.create(path)
        producers[target.kind](ctx, target, tmp)
        _fsync(tmp)
        if target.kind in DB_KINDS:
            manifest_tmp.write_text(json.dumps(manifest_data(target), indent=2), encoding="utf-8")
            os.replace(manifest_tmp, manifest_of(final))
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
        manifest_tmp.unlink(missing_ok=True)
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
        manifest_of(candidate).unlink(missing_ok=True)
        pruned.append(str(candidate))
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

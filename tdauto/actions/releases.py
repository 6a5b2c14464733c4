"""Release directories, as Capistrano lays them out, and the mechanics the deployment
actions (``tdauto.actions.deployment``) share.

An application directory holds::

    <app_dir>/releases/<release_id>/   one directory per deployed release
    <app_dir>/current -> releases/<id>  a relative symlink: what is live
    <app_dir>/rolled_back/<id>/         releases a rollback switched away from
    <app_dir>/.tdauto/                  the lock and the records of deploys and rollbacks

``current`` only ever changes by ``os.replace`` of a fresh symlink over it, so a reader sees
the old release or the new one, never a missing link. A release appears in ``releases/``
whole (it is built in a hidden staging directory and renamed into place). Releases are
ordered by the directory's mtime, then by name; a deploy stamps its release newer than every
other, and the default ids start with a UTC stamp, so both orders agree.

Deploys and rollbacks of one app hold ``.tdauto/lock`` (``flock``), and write a record named
after a hash of the action's idempotency key before they change anything: a redelivered
attempt reads it and finishes the same change instead of making another.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tdauto.errors import ActionError

RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
TAR_EXTS = (".tar.gz", ".tgz", ".tar")
ZIP_EXTS = (".zip",)
RECORD_TTL_S = 7 * 86400  # records outlive any redelivery (leases and retries are minutes)
_STAMP = "%Y%m%dT%H%M%SZ"


def key_suffix(idempotency_key: str) -> str:
    """Eight hex digits that name this action's release and records on every attempt."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:8]


def default_release_id(idempotency_key: str, now_ts: float | None = None) -> str:
    stamp = time.strftime(_STAMP, time.gmtime(time.time() if now_ts is None else now_ts))
    return f"{stamp}-{key_suffix(idempotency_key)}"


@dataclass(frozen=True)
class App:
    """One application directory (``root`` is absolute and already confined)."""

    root: Path

    @property
    def releases_dir(self) -> Path:
        return self.root / "releases"

    @property
    def current_link(self) -> Path:
        return self.root / "current"

    @property
    def rolled_back_dir(self) -> Path:
        return self.root / "rolled_back"

    @property
    def state_dir(self) -> Path:
        return self.root / ".tdauto"

    def release_path(self, release: str) -> Path:
        return self.releases_dir / release

    def releases(self) -> list[str]:
        """Release ids, oldest first (mtime, then name); staging dirs and links excluded."""
        found: list[tuple[int, str]] = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.releases_dir):
                if RELEASE_ID.match(entry.name) and entry.is_dir(follow_symlinks=False):
                    found.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name))
        return [name for _, name in sorted(found)]

    def current(self) -> str | None:
        """The release ``current`` points to; None before the first deploy.

        Refuses a ``current`` that is not a symlink or that points outside ``releases/``:
        something other than tdauto manages this directory.
        """
        link = self.current_link
        if not link.is_symlink():
            if link.exists():
                raise ActionError(
                    f"{link} is not a symlink; move it away so releases can be switched",
                    "conflict",
                )
            return None
        target = PurePosixPath(os.readlink(link))
        if target.is_absolute() or target.parent != PurePosixPath("releases"):
            raise ActionError(
                f"{link} points to {target}, not to a release under releases/; "
                "point it at releases/<id> or remove it",
                "conflict",
            )
        return target.name

    def previous_of(self, release: str) -> str | None:
        """The release just before ``release`` in order, if any."""
        ordered = self.releases()
        if release not in ordered:
            return None
        at = ordered.index(release)
        return ordered[at - 1] if at > 0 else None

    def switch(self, release: str) -> None:
        """Point ``current`` at ``release`` atomically: a new link renamed over the old."""
        self.current()  # refuses a current that is not ours
        tmp = self.root / f".current-{uuid.uuid4().hex[:8]}.tmp"
        os.symlink(f"releases/{release}", tmp)
        try:
            os.replace(tmp, self.current_link)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ActionError(f"cannot switch {self.current_link}: {exc}", "io") from exc
        fsync_dir(self.root)


@contextlib.contextmanager
def locked(app: App) -> Iterator[None]:
    """Serialize deploys and rollbacks of one app (also two deliveries of one action)."""
    app.state_dir.mkdir(parents=True, exist_ok=True)
    with open(app.state_dir / "lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def read_record(app: App, kind: str, suffix: str) -> dict[str, Any] | None:
    path = app.state_dir / f"{kind}-{suffix}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # torn by a crash before its rename: as if never written
    return data if isinstance(data, dict) else None


def write_record(app: App, kind: str, suffix: str, data: dict[str, Any]) -> None:
    app.state_dir.mkdir(parents=True, exist_ok=True)
    final = app.state_dir / f"{kind}-{suffix}.json"
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, final)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- building a release -------------------------------------------------------------------


def artifact_format(path: Path) -> str:
    """``directory``, ``tar``, ``zip`` or ``file`` (copied as it is)."""
    if path.is_dir():
        return "directory"
    name = path.name.lower()
    if name.endswith(TAR_EXTS):
        return "tar"
    if name.endswith(ZIP_EXTS):
        return "zip"
    return "file"


def check_archive(path: Path) -> int:
    """Members of a tar or zip archive, each checked as ``unpack`` would; raise if unsafe."""
    fmt = artifact_format(path)
    try:
        if fmt == "tar":
            with tarfile.open(path, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _safe_tar_member(path, member, path.parent / "release")
                return len(members)
        if fmt == "zip":
            with zipfile.ZipFile(path) as archive:
                infos = archive.infolist()
                for info in infos:
                    _safe_zip_member(path, info)
                return len(infos)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ActionError(f"{path} is not a readable {fmt} archive: {exc}", "invalid") from exc
    return 0


def _safe_tar_member(archive: Path, member: tarfile.TarInfo, dest: Path) -> None:
    try:
        tarfile.data_filter(member, str(dest))
    except tarfile.FilterError as exc:
        raise ActionError(
            f"{archive}: refusing unsafe member {member.name!r}: {exc}", "unsafe"
        ) from exc


def _safe_zip_member(archive: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = PurePosixPath(name).parts
    mode = info.external_attr >> 16
    why = None
    if name.startswith("/") or "\\" in name or (parts and ":" in parts[0]):
        why = "an absolute path"
    elif ".." in parts:
        why = "a path leading out with '..'"
    elif stat.S_ISLNK(mode):
        why = "a symlink"
    if why:
        raise ActionError(f"{archive}: refusing unsafe member {name!r}: {why}", "unsafe")


def build_release(
    artifact: Path, staging: Path, strip_components: int, cancel: threading.Event
) -> tuple[Path, int]:
    """Unpack or copy ``artifact`` into the new directory ``staging``.

    Returns the directory that becomes the release (``staging``, or the single directory
    ``strip_components`` levels down) and the number of entries written.
    """
    staging.mkdir(parents=True)
    fmt = artifact_format(artifact)
    if fmt == "tar":
        count = _unpack_tar(artifact, staging, cancel)
    elif fmt == "zip":
        count = _unpack_zip(artifact, staging, cancel)
    elif fmt == "directory":
        count = _copy_tree(artifact, staging, cancel)
    else:
        shutil.copy2(artifact, staging / artifact.name)
        count = 1
    root = staging
    for level in range(strip_components):
        entries = list(root.iterdir())
        if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
            raise ActionError(
                f"strip_components={strip_components}: level {level + 1} of {artifact.name} "
                f"holds {sorted(e.name for e in entries)}, not one directory; "
                "lower strip_components",
                "invalid",
            )
        root = entries[0]
    return root, count


def _cancelled(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise ActionError("deploy cancelled", "cancelled")


def _unpack_tar(artifact: Path, dest: Path, cancel: threading.Event) -> int:
    with tarfile.open(artifact, "r:*") as tar:
        members = tar.getmembers()
        for member in members:  # every member is checked before anything is written
            _safe_tar_member(artifact, member, dest)
        for member in members:
            _cancelled(cancel)
            tar.extract(member, dest, filter="data")
    return len(members)


def _unpack_zip(artifact: Path, dest: Path, cancel: threading.Event) -> int:
    with zipfile.ZipFile(artifact) as archive:
        infos = archive.infolist()
        for info in infos:
            _safe_zip_member(artifact, info)
        for info in infos:
            _cancelled(cancel)
            written = Path(archive.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():  # keep executable bits, as tar's data filter does
                written.chmod((mode & 0o755) | 0o600)
    return len(infos)


def _copy_tree(source: Path, dest: Path, cancel: threading.Event) -> int:
    """Copy a directory; symlinks stay links and must not lead out of ``source``."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(source):
        _cancelled(cancel)
        here = Path(dirpath)
        target = dest / here.relative_to(source)
        target.mkdir(exist_ok=True)
        for name in [*dirnames, *filenames]:
            entry = here / name
            if entry.is_symlink():
                resolved = entry.resolve()
                if resolved != source and source not in resolved.parents:
                    raise ActionError(
                        f"{entry} is a symlink leading out of the artifact ({resolved})",
                        "unsafe",
                    )
                (target / name).symlink_to(os.readlink(entry))
            elif name in filenames and entry.is_file():
                shutil.copy2(entry, target / name)
            elif name in filenames:
                continue  # sockets, fifos, devices: not part of a release
            count += 1
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
    return count


def commit_release(app: App, root: Path, release: str) -> Path:
    """Rename the built tree into ``releases/<release>`` and stamp it the newest release."""
    final = app.release_path(release)
    newest = max((app.release_path(r).stat().st_mtime_ns for r in app.releases()), default=0)
    os.replace(root, final)
    stamp = max(time.time_ns(), newest + 1)
    os.utime(final, ns=(stamp, stamp))
    fsync_dir(app.releases_dir)
    return final


# --- pruning and discarding ---------------------------------------------------------------


def prune(app: App, keep: int, protect: set[str]) -> tuple[list[str], list[str]]:
    """Remove releases beyond the newest ``keep`` (never one in ``protect``), the same
    number of rolled-back releases, and old records. Returns (removed paths, errors)."""
    removed: list[str] = []
    errors: list[str] = []
    ordered = app.releases()
    doomed = [r for r in ordered[: max(0, len(ordered) - keep)] if r not in protect]
    paths = [app.release_path(r) for r in doomed]
    with contextlib.suppress(FileNotFoundError):
        aside = sorted(app.rolled_back_dir.iterdir(), key=lambda p: p.lstat().st_mtime_ns)
        paths += [p for p in aside[: max(0, len(aside) - keep)] if not p.is_symlink()]
    for path in paths:
        try:
            shutil.rmtree(path)
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror or exc}")
        else:
            removed.append(str(path))
    cutoff = time.time() - RECORD_TTL_S
    with contextlib.suppress(FileNotFoundError):
        for record in app.state_dir.glob("*.json"):
            if record.stat().st_mtime < cutoff:
                record.unlink(missing_ok=True)
    return removed, errors


def set_aside(app: App, release: str) -> Path | None:
    """Move a release a rollback left into ``rolled_back/``, so it is never ``previous``."""
    source = app.release_path(release)
    if not source.is_dir() or source.is_symlink():
        return None
    app.rolled_back_dir.mkdir(exist_ok=True)
    dest = app.rolled_back_dir / release
    if dest.exists():
        dest = app.rolled_back_dir / f"{release}.{uuid.uuid4().hex[:6]}"
    os.replace(source, dest)
    os.utime(dest)  # the order in rolled_back/ is the order of rollbacks
    return dest

"""Release directories, as Capistrano lays them out, and the mechanics the deployment
actions (``tdauto.actions.deployment``) share.

An application directory holds::

    <app_dir>/releases/<release_id>/   one directory per deployed release
    <app_dir>/current -> releases/<id>  a relative symlink: what is live
    <app_dir>/rolled_back/<id>/         releases a rollback switched away from
    <app_dir>/.tdauto/                  the lock and the records of deploys and rollbacks

``current`` only ever changes by ``os.replace`` of a fresh symlink over it, so a reader sees
the old release or the new one, never a missing link. A release appears in ``releases/``
whole (it is built in a hidden staging directory, ``tdauto.actions.release_build``, and
renamed into place). Releases are ordered by the directory's mtime, then by name; a deploy
stamps its release newer than every other, and the default ids start with a UTC stamp, so
both orders agree.

An action works on a ``Site``: the app directory and its ``releases``, ``rolled_back`` and
``.tdauto`` folders opened once, at the start, through ``tdauto.actions.paths`` (no link
followed), and everything after that is done relative to those descriptors. A planted
``releases`` or ``rolled_back`` symlink thus fails the action, naming ``app_dir``, before it
changes anything.

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
import stat
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tdauto.actions.paths import DIR_FLAGS, Folder, open_dir
from tdauto.errors import ActionError

RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
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
    """The paths of one application directory (``root`` absolute), for messages and for
    reading a layout; actions change it only through a ``Site``."""

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
        try:
            folder = Folder(os.open(self.releases_dir, DIR_FLAGS), self.releases_dir, "app_dir")
        except FileNotFoundError:
            return []
        with folder:
            return release_ids(folder)

    def current(self) -> str | None:
        """The release ``current`` points to; None before the first deploy."""
        try:
            folder = Folder(os.open(self.root, DIR_FLAGS), self.root, "app_dir")
        except FileNotFoundError:
            return None
        with folder:
            return current_of(folder)


def release_ids(releases: Folder) -> list[str]:
    """The release ids in an open ``releases`` folder, oldest first; links excluded."""
    found: list[tuple[int, str]] = []
    with os.scandir(releases.fd) as listing:
        for entry in listing:
            if RELEASE_ID.match(entry.name) and entry.is_dir(follow_symlinks=False):
                found.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name))
    return [name for _, name in sorted(found)]


def current_of(root: Folder) -> str | None:
    """The release ``current`` points to in the open app folder ``root``.

    Refuses a ``current`` that is not a symlink or that points outside ``releases/``:
    something other than tdauto manages this directory.
    """
    link = root.path / "current"
    info = root.lstat("current")
    if info is None:
        return None
    if not stat.S_ISLNK(info.st_mode):
        raise ActionError(
            f"{link} is not a symlink; move it away so releases can be switched", "conflict"
        )
    target = PurePosixPath(root.readlink("current"))
    if target.is_absolute() or target.parent != PurePosixPath("releases"):
        raise ActionError(
            f"{link} points to {target}, not to a release under releases/; "
            "point it at releases/<id> or remove it",
            "conflict",
        )
    return target.name


@dataclass
class Site:
    """An app directory opened for one action: its folders held open (see the module doc)."""

    app: App
    root: Folder
    releases: Folder
    state: Folder
    rolled_back: Folder | None

    def current(self) -> str | None:
        return current_of(self.root)

    def release_ids(self) -> list[str]:
        return release_ids(self.releases)

    def has_release(self, release: str) -> bool:
        return self.releases.is_dir(release)

    def set_aside_exists(self, release: str) -> bool:
        return self.rolled_back is not None and self.rolled_back.lstat(release) is not None

    def previous_of(self, release: str) -> str | None:
        """The release just before ``release`` in order, if any."""
        ordered = self.release_ids()
        if release not in ordered:
            return None
        at = ordered.index(release)
        return ordered[at - 1] if at > 0 else None

    def switch(self, release: str) -> None:
        """Point ``current`` at ``release`` atomically: a new link renamed over the old."""
        self.current()  # refuses a current that is not ours
        tmp = f".current-{uuid.uuid4().hex[:8]}.tmp"
        self.root.symlink(f"releases/{release}", tmp)
        try:
            self.root.rename(tmp, self.root, "current")
        except OSError as exc:
            self.root.unlink(tmp)
            raise ActionError(f"cannot switch {self.app.current_link}: {exc}", "io") from exc
        self.root.fsync()


@contextlib.contextmanager
def opened(path: Path, allowed: Sequence[Path], *, create: bool) -> Iterator[Site]:
    """Open the app directory ``path`` (confined) and its folders, never following a link;
    ``create`` makes the app folder of a first deploy (``releases`` is always made).

    Raises ``FileNotFoundError`` when the app is missing and ``create`` is false, and
    ``ActionError`` naming ``app_dir`` for a link in the way."""
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(open_dir(path, allowed, "app_dir", create=create))
        releases = stack.enter_context(root.sub("releases", create=True))
        state = stack.enter_context(root.sub(".tdauto", create=True))
        try:
            rolled_back: Folder | None = stack.enter_context(root.sub("rolled_back"))
        except FileNotFoundError:
            rolled_back = None
        site = Site(App(path), root, releases, state, rolled_back)
        try:
            yield site
        finally:
            if site.rolled_back is not None and site.rolled_back is not rolled_back:
                site.rolled_back.close()


@contextlib.contextmanager
def locked(site: Site) -> Iterator[None]:
    """Serialize deploys and rollbacks of one app (also two deliveries of one action)."""
    fd = site.state.open_fd("lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with open(fd, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def read_record(site: Site, kind: str, suffix: str) -> dict[str, Any] | None:
    try:
        data = json.loads(site.state.read_text(f"{kind}-{suffix}.json"))
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # torn by a crash before its rename: as if never written
    return data if isinstance(data, dict) else None


def write_record(site: Site, kind: str, suffix: str, data: dict[str, Any]) -> None:
    site.state.write_text(f"{kind}-{suffix}.json", json.dumps(data))


def commit_release(site: Site, parent: Folder, built: str, release: str) -> None:
    """Rename the built tree (``built`` in the open folder ``parent``) into
    ``releases/<release>`` and stamp it the newest release."""
    newest = max(
        (info.st_mtime_ns for r in site.release_ids() if (info := site.releases.lstat(r))),
        default=0,
    )
    parent.rename(built, site.releases, release)
    stamp = max(time.time_ns(), newest + 1)
    site.releases.touch(release, (stamp, stamp))
    site.releases.fsync()


# --- pruning and discarding ---------------------------------------------------------------


def prune(site: Site, keep: int, protect: set[str]) -> tuple[list[str], list[str]]:
    """Remove releases beyond the newest ``keep`` (never one in ``protect``), the same
    number of rolled-back releases, and old records. Returns (removed paths, errors)."""
    removed: list[str] = []
    errors: list[str] = []
    ordered = site.release_ids()
    doomed = [(site.releases, r) for r in ordered[: max(0, len(ordered) - keep)]]
    doomed = [(folder, r) for folder, r in doomed if r not in protect]
    if site.rolled_back is not None:
        aside = [
            (info.st_mtime_ns, name)
            for name in site.rolled_back.names()
            if (info := site.rolled_back.lstat(name)) and stat.S_ISDIR(info.st_mode)
        ]
        aside.sort()
        doomed += [(site.rolled_back, name) for _, name in aside[: max(0, len(aside) - keep)]]
    for folder, name in doomed:
        try:
            folder.remove_tree(name)
        except OSError as exc:
            errors.append(f"{folder.path / name}: {exc.strerror or exc}")
        else:
            removed.append(str(folder.path / name))
    cutoff = time.time() - RECORD_TTL_S
    for name in site.state.names():
        info = site.state.lstat(name)
        if name.endswith(".json") and info is not None and info.st_mtime < cutoff:
            site.state.unlink(name)
    return removed, errors


def set_aside(site: Site, release: str) -> Path | None:
    """Move a release a rollback left into ``rolled_back/``, so it is never ``previous``."""
    if not site.has_release(release):
        return None
    if site.rolled_back is None:
        site.rolled_back = site.root.sub("rolled_back", create=True)
    dest = release
    if site.rolled_back.lstat(dest) is not None:
        dest = f"{release}.{uuid.uuid4().hex[:6]}"
    site.releases.rename(release, site.rolled_back, dest)
    site.rolled_back.touch(dest)  # the order in rolled_back/ is the order of rollbacks
    return site.rolled_back.path / dest

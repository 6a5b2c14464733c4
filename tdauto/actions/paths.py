"""The one confinement mechanism of the actions: folders opened without following links.

Checking a path against ``TDAUTO_ALLOWED_PATHS`` once (``context.confine``) is not enough: a
symlink planted later inside an allowed folder (``<app_dir>/releases -> /etc``) would lead
the action out when it opens, writes or deletes by path. So an action opens the folders it
works in here, and then acts only relative to their descriptors:

- ``open_dir`` opens a checked path from its allowed root one component at a time with
  ``O_DIRECTORY | O_NOFOLLOW`` and ``dir_fd`` (creating missing components when asked). A
  component that is a symlink or a file, even one swapped in after the check, is refused
  with an error naming the param (kind ``not_allowed``); another failure, such as no
  permission, is kind ``io``. ``held`` checks the param's path (``ctx.confine``) first.
- ``Folder`` is such an open directory: ``sub(name)`` opens a child the same way; files are
  read, written, renamed and deleted with ``dir_fd`` and never through a link;
  ``remove_tree`` deletes a subtree through ``shutil.rmtree``'s descriptor-based walk, which
  never follows a link.
- ``Folder.pinned`` is a path to the open directory itself (``/proc/<pid>/fd/<n>``) for code
  that takes paths (tarfile, sqlite, a child's ``cwd``): it cannot be redirected by renames
  or links once the folder is open. Without ``/proc`` it falls back to the path, re-checked.
- ``held`` and ``confined_cwd`` are the context managers the handlers use.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from tdauto.errors import ActionError

if TYPE_CHECKING:
    from tdauto.actions.context import ActionContext

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def refused(param: str, where: Path, why: str) -> ActionError:
    """The one error of a folder an action may not use; ``param`` is what the user gave."""
    return ActionError(f"{param}: {where} {why}", "not_allowed")


def _refusal(parent_fd: int, name: str, where: Path, param: str, exc: OSError) -> ActionError:
    """Why ``name`` could not be opened as a directory without following links: a link or a
    file in the way (kind ``not_allowed``), or the system's own reason (kind ``io``)."""
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except OSError:
        info = None
    if info is not None and stat.S_ISLNK(info.st_mode):
        target = os.readlink(name, dir_fd=parent_fd)
        return refused(
            param,
            where,
            f"is a symlink (to {target}); an action never follows a link in the folders it "
            "works in: replace it with a real directory",
        )
    if info is not None and not stat.S_ISDIR(info.st_mode):
        return refused(param, where, "is not a directory; move it away or give another path")
    return ActionError(f"{param}: {where} cannot be opened ({exc.strerror or exc})", "io")


def _open_child(
    parent_fd: int, name: str, where: Path, param: str, create: bool, mode: int = 0o777
) -> int:
    """Open the directory ``name`` under ``parent_fd`` without following a link (made with
    ``mode`` when ``create`` and missing)."""
    for _ in range(2):
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, mode, dir_fd=parent_fd)
        except OSError as exc:
            raise _refusal(parent_fd, name, where, param, exc) from None
    return os.open(name, DIR_FLAGS, dir_fd=parent_fd)


class Folder:
    """An open directory inside the allowed paths; ``path`` is for messages only."""

    def __init__(self, fd: int, path: Path, param: str) -> None:
        self.fd, self.path, self.param = fd, path, param

    def __enter__(self) -> Folder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def pinned(self) -> Path:
        """A path that names this open directory, whatever happens to ``path`` meanwhile.

        Without ``/proc`` (not Linux) it is ``path``, checked to still be this folder: a link
        swapped in after that check would be followed."""
        proc = Path(f"/proc/{os.getpid()}/fd/{self.fd}")  # this process now (after a fork)
        if proc.is_dir():
            return proc
        try:
            same = os.path.samestat(os.stat(self.path), os.fstat(self.fd))
        except OSError:
            same = False
        if not same:
            raise refused(self.param, self.path, "changed while the action used it; run it again")
        return self.path

    def sub(self, name: str, *, create: bool = False, mode: int = 0o777) -> Folder:
        """Open the child directory ``name``; a symlink there is refused, never followed.

        Raises ``FileNotFoundError`` when it does not exist and ``create`` is false; a folder
        it creates gets ``mode`` (0700 for one that holds backups)."""
        where = self.path / name
        fd = _open_child(self.fd, name, where, self.param, create, mode)
        return Folder(fd, where, self.param)

    def names(self) -> list[str]:
        with os.scandir(self.fd) as listing:
            return [entry.name for entry in listing]

    def lstat(self, name: str) -> os.stat_result | None:
        """The entry itself (a link is not followed), or None when it is not there."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def is_dir(self, name: str) -> bool:
        info = self.lstat(name)
        return info is not None and stat.S_ISDIR(info.st_mode)

    def is_file(self, name: str) -> bool:
        info = self.lstat(name)
        return info is not None and stat.S_ISREG(info.st_mode)

    def open_fd(self, name: str, flags: int, mode: int = 0o666) -> int:
        """``os.open`` of a file here; a link in its place is refused, never followed."""
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            why = "is a symlink; an action never follows a link in the folders it works in"
            raise refused(self.param, self.path / name, f"{why}: remove it") from None

    def read_text(self, name: str) -> str:
        with open(self.open_fd(name, os.O_RDONLY), encoding="utf-8") as handle:
            return handle.read()

    def write_text(self, name: str, text: str, mode: int = 0o644) -> None:
        """Write ``name`` whole: a fresh temp file here (created with ``mode``), renamed over
        it."""
        tmp = f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            with open(self.open_fd(tmp, flags, mode), "w", encoding="utf-8") as handle:
                handle.write(text)
            self.rename(tmp, self, name)
        finally:
            self.unlink(tmp)

    def unlink(self, name: str) -> None:
        """Remove a file or link here (a link is removed, not what it points to)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def rename(self, name: str, to: Folder, new_name: str) -> None:
        os.rename(name, new_name, src_dir_fd=self.fd, dst_dir_fd=to.fd)

    def symlink(self, target: str, name: str) -> None:
        os.symlink(target, name, dir_fd=self.fd)

    def readlink(self, name: str) -> str:
        return os.readlink(name, dir_fd=self.fd)

    def touch(self, name: str, ns: tuple[int, int] | None = None) -> None:
        """Set the mtime of ``name`` (now, or ``ns``) without following a link."""
        if ns is None:
            os.utime(name, dir_fd=self.fd, follow_symlinks=False)
        else:
            os.utime(name, ns=ns, dir_fd=self.fd, follow_symlinks=False)

    def fsync(self) -> None:
        os.fsync(self.fd)

    def remove_tree(self, name: str) -> None:
        """Delete the directory ``name`` and all below it; links inside are removed, never
        followed, and a link in ``name``'s place is refused."""
        info = self.lstat(name)
        if info is None:
            return
        if not stat.S_ISDIR(info.st_mode):
            raise OSError(errno.ENOTDIR, "not a directory (a link is never followed)", name)
        shutil.rmtree(name, dir_fd=self.fd)


def _root_of(path: Path, allowed: Sequence[Path]) -> Path:
    for root in sorted(allowed, key=lambda p: len(p.parts), reverse=True):
        if path == root or path.is_relative_to(root):
            return root
    raise ValueError(f"{path} is outside {', '.join(map(str, allowed))}")


def open_dir(path: Path, allowed: Sequence[Path], param: str, *, create: bool = False) -> Folder:
    """Open ``path`` (absolute, resolved, inside ``allowed``) from its allowed root, one
    component at a time, never following a link; create missing parts when ``create``.

    Raises ``FileNotFoundError`` for a missing part when ``create`` is false, and
    ``ActionError`` naming ``param`` for a link or a file in the way."""
    root = _root_of(path, allowed)
    if create:
        os.makedirs(root, exist_ok=True)  # the operator's own folder, as a first write makes it
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # links here are theirs
    folder = Folder(fd, root, param)
    try:
        for part in path.relative_to(root).parts:
            child = folder.sub(part, create=create)
            folder.close()
            folder = child
    except BaseException:
        folder.close()
        raise
    return folder


def held(ctx: ActionContext, value: str | Path, param: str, *, create: bool = False) -> Folder:
    """The param's folder, confined to ``TDAUTO_ALLOWED_PATHS`` and opened without links;
    use it as a context manager so it is closed."""
    path = ctx.confine(value, param)
    return open_dir(path, ctx.settings.confined_paths, param, create=create)


@contextlib.contextmanager
def confined_cwd(ctx: ActionContext, value: str | Path, param: str = "cwd") -> Iterator[Path]:
    """A working directory for a program: the param's folder held open, as a pinned path
    (a link swapped in after the check cannot move the program elsewhere)."""
    try:
        folder = held(ctx, value, param)
    except FileNotFoundError:
        raise ActionError(
            f"{param}: {value} does not exist; create it or give another directory", "invalid"
        ) from None
    with folder:
        yield folder.pinned


__all__ = ["Folder", "confined_cwd", "held", "open_dir", "refused"]

"""The ``cleanup`` action: delete old files under confined directories.

Deleting is the most dangerous thing a scheduled task does, so the walk is defensive: each
root is resolved and checked against ``TDAUTO_ALLOWED_PATHS``, then opened from its allowed
path down without following a link (``tdauto.actions.paths.open_dir``); every directory
below is opened relative to its parent's file descriptor with ``O_NOFOLLOW`` and every file
is removed with ``unlink(name, dir_fd=...)``. A symlink is never followed and never removed,
and a directory swapped for a symlink, before or half-way through the walk, cannot lead it
out of the confined roots. Only directories the sweep itself emptied are removed, never the
roots, so an empty folder someone made on purpose stays.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tdauto.actions.context import ActionContext, confine
from tdauto.actions.paths import DIR_FLAGS, open_dir
from tdauto.actions.registry import action
from tdauto.errors import ActionError
from tdauto.units import parse_duration_s

DEFAULT_FOLDERS = ("executions", "logs", "metrics", "reports")
LIST_CAP = 100  # paths listed in the output; the counts cover everything


class CleanupParams(BaseModel):
    """Params of ``cleanup``.

    - ``older_than`` (required): files whose mtime is older than this go ("30days", "12h",
      or a number of seconds).
    - ``path``: a directory or a list of them, each inside ``TDAUTO_ALLOWED_PATHS``; default
      the data dir's ``executions``, ``logs``, ``metrics`` and ``reports``.
    - ``pattern``: a glob matched against file names (not paths), default ``*``.
    - ``dry_run``: report what would go and delete nothing.
    - ``recursive``: descend into subdirectories (default true).
    """

    model_config = ConfigDict(extra="forbid")

    older_than: float = Field(description="minimum age of removed files, seconds")
    path: list[str] | None = Field(default=None, description="directories to clean")
    pattern: str = Field(default="*", description="glob on file names")
    dry_run: bool = False
    recursive: bool = True

    @field_validator("older_than", mode="before")
    @classmethod
    def _older_than(cls, value: object) -> float:
        return parse_duration_s(value)

    @field_validator("path", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        items = [value] if isinstance(value, str | Path) else value
        if isinstance(items, list | tuple):
            return [str(item) if isinstance(item, Path) else item for item in items]
        return items

    @field_validator("path")
    @classmethod
    def _paths(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return None
        if not value or any(not p.strip() for p in value):
            raise ValueError(
                "give one or more directories, or leave path out to clean the data dir's "
                f"{', '.join(DEFAULT_FOLDERS)} folders"
            )
        settings = (info.context or {}).get("settings")
        if settings is not None:
            for entry in value:
                confine(entry, settings.confined_paths, "path")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        if not value or "/" in value or os.sep in value:
            raise ValueError(
                f"pattern {value!r} must be a non-empty glob on file names without '/', "
                'e.g. "*.log"; recursive: true already looks into subdirectories'
            )
        return value

    @model_validator(mode="after")
    def _default_paths(self, info: ValidationInfo) -> CleanupParams:
        settings = (info.context or {}).get("settings")
        if settings is not None and self.path is None:
            _check_default_folders(settings.data_path, tuple(settings.confined_paths))
        return self


@functools.lru_cache(maxsize=64)
def _check_default_folders(data_path: Path, allowed: tuple[Path, ...]) -> None:
    """The default folders lie inside the allowed paths: checked once per data dir and
    allowed paths, not per task created (four ``resolve()`` calls a task was a third of the
    cost of ``create_task``). A failure is not cached, so a fixed layout passes at once; the
    handler confines every path again when it runs, so a symlink made later cannot lead a
    cleanup out."""
    for folder in DEFAULT_FOLDERS:
        confine(data_path / folder, list(allowed), "path")


@action("cleanup", resource_class="storage", params=CleanupParams, process_type="maintenance")
def cleanup(
    ctx: ActionContext,
    *,
    older_than: float,
    path: list[str] | None = None,
    pattern: str = "*",
    dry_run: bool = False,
    recursive: bool = True,
) -> dict[str, Any]:
    """Remove regular files older than ``older_than`` under confined directories.

    Output: ``removed`` (the first 100 paths), ``files``, ``bytes_freed``, ``dirs_removed``,
    ``dry_run``, ``errors`` (files that could not be removed; the rest went on) and
    ``truncated`` (more than 100 paths).
    """
    given = path or [str(ctx.data_dir / folder) for folder in DEFAULT_FOLDERS]
    roots = _outermost([ctx.confine(entry, "path") for entry in given])
    sweep = _Sweep(pattern, time.time() - older_than, dry_run, recursive, ctx.cancel_event)
    for root in roots:
        ctx.logger.info(
            "cleanup %s: files matching %r older than %.0fs%s",
            root,
            pattern,
            older_than,
            " (dry run)" if dry_run else "",
        )
        sweep.root(root, ctx.settings.confined_paths)
    ctx.logger.info(
        "cleanup %s %d files, %d bytes%s",
        "would remove" if dry_run else "removed",
        sweep.files,
        sweep.bytes_freed,
        f", {len(sweep.errors)} errors" if sweep.errors else "",
    )
    return {
        "removed": sweep.removed,
        "files": sweep.files,
        "bytes_freed": sweep.bytes_freed,
        "dirs_removed": sweep.dirs_removed,
        "dry_run": dry_run,
        "errors": sweep.errors,
        "truncated": sweep.files > len(sweep.removed),
    }


def _outermost(roots: list[Path]) -> list[Path]:
    """Drop roots inside other roots, so no file is visited (or counted) twice."""
    unique = sorted(set(roots), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for root in unique:
        if not any(parent == root or parent in root.parents for parent in kept):
            kept.append(root)
    return kept


@dataclass
class _Sweep:
    """One cleanup's walk and its tally."""

    pattern: str
    cutoff_ts: float
    dry_run: bool
    recursive: bool
    cancel: threading.Event
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files: int = 0
    bytes_freed: int = 0
    dirs_removed: int = 0

    def root(self, root: Path, allowed: list[Path]) -> None:
        """Sweep one root, opened from its allowed path without following a link (a link
        swapped in on the way since the check fails the action, naming ``path``)."""
        try:
            folder = open_dir(root, allowed, "path")
        except FileNotFoundError:
            return  # nothing to clean yet (a default folder nothing has written to)
        except ActionError as exc:
            if exc.kind != "io":
                raise  # a link or a file in the way: refused
            if len(self.errors) < LIST_CAP:  # e.g. no permission: listed, the rest goes on
                self.errors.append(str(exc).removeprefix("path: "))
            return
        with folder:
            self._directory(folder.fd, root)

    def _directory(self, fd: int, where: Path) -> bool:
        """Sweep the open directory ``fd``; true if the sweep emptied it."""
        touched = False
        with os.scandir(fd) as listing:
            entries = [entry.name for entry in listing]
        for name in entries:
            if self.cancel.is_set():
                raise ActionError("cleanup cancelled", "cancelled")
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode) and self.recursive:
                touched |= self._subdirectory(fd, name, where / name)
            elif (
                stat.S_ISREG(info.st_mode)
                and info.st_mtime < self.cutoff_ts
                and fnmatch.fnmatchcase(name, self.pattern)
            ):
                touched |= self._file(fd, name, where / name, info.st_size)
            # Symlinks, sockets, devices: never followed, never removed.
        if not touched:
            return False
        with os.scandir(fd) as listing:
            return next(listing, None) is None

    def _subdirectory(self, parent_fd: int, name: str, where: Path) -> bool:
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:  # e.g. swapped for a symlink since it was listed: ELOOP
            self._error(where, exc)
            return False
        try:
            emptied = self._directory(fd, where)
        finally:
            os.close(fd)
        if not emptied or self.dry_run:
            return False
        try:
            os.rmdir(name, dir_fd=parent_fd)
        except OSError:
            return False  # something new arrived in it; it stays
        self.dirs_removed += 1
        return True

    def _file(self, dir_fd: int, name: str, where: Path, size: int) -> bool:
        if not self.dry_run:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                return False
            except OSError as exc:
                self._error(where, exc)
                return False
        self.files += 1
        self.bytes_freed += size
        if len(self.removed) < LIST_CAP:
            self.removed.append(str(where))
        return True

    def _error(self, where: Path, exc: OSError) -> None:
        if len(self.errors) < LIST_CAP:
            self.errors.append(f"{where}: {exc.strerror or exc}")

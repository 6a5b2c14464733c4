"""Helpers for the confinement tests: folders of files to keep an eye on, symlinks planted
in an action's folders, and a folder swapped for a link just after an action checked it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tdauto.actions import ActionContext

OLD_S = 400 * 86400  # older than any retention or cleanup age the tests use


def fill(folder: Path, files: dict[str, str], *, old: bool = False) -> Path:
    """Write ``files`` (relative path -> text) under ``folder``; ``old`` dates them a year+."""
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if old:
            os.utime(path, (path.stat().st_atime - OLD_S, path.stat().st_mtime - OLD_S))
    return folder


def contents(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` (relative path -> text, "/" for a folder),
    to compare before and after an action."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        found[rel] = "/" if path.is_dir() else path.read_text(errors="replace")
    return found


def plant(link: Path, target: Path) -> Path:
    """Put a symlink at ``link`` (its parents made) pointing to ``target``."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    return link


def swap_after_check(ctx: ActionContext, folder: Path, target: Path, calls: int = 1) -> None:
    """Make ``ctx.confine`` replace ``folder`` by a link to ``target`` right after its
    ``calls``-th check passes: the race of a link swapped in between an action's last check
    and its use, without timing."""
    check: Callable[..., Path] = ctx.confine
    seen = 0

    def confine_then_swap(path: str | Path, field_name: str = "path") -> Path:
        nonlocal seen
        resolved = check(path, field_name)
        seen += 1
        if seen == calls:
            shutil.rmtree(folder)
            plant(folder, target)
        return resolved

    vars(ctx)["confine"] = confine_then_swap  # shadows the method on this context only

"""Which data dir (the local store) a process uses, found the way git finds ``.git``.

``TDAUTO_DATA_DIR`` (or ``data_dir=``) wins; else the nearest existing
``data/enterprise/automation`` in the current directory or a parent (a project's store);
else the per-user default ``$XDG_DATA_HOME/tdauto`` (``~/.local/share/tdauto``). Every entry
point (CLI, facade, workers) goes through here, so run from a project's subfolder they all
agree on the project's store instead of making a new one where they stand. Only the stdlib
and ``tdauto.errors``: ``settings.py`` uses it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tdauto.errors import StoreNotFound

if TYPE_CHECKING:
    from tdauto.settings import Settings

VARIABLE = "TDAUTO_DATA_DIR"
PROJECT = Path("data/enterprise/automation")
How = Literal["env", "argument", "project", "user"]


@dataclass(frozen=True)
class Origin:
    """The data dir in use and why it is that one."""

    path: Path
    how: How
    start: Path | None = None  # where the search for a project's store began

    def describe(self) -> str:
        """``PATH (why)``, as ``up`` and ``config`` print it."""
        why = {
            "env": VARIABLE,
            "argument": "data_dir= argument",
            "project": f"found {PROJECT} in {_parent_of_project(self.path)}",
            "user": f"per-user default: no {PROJECT} in {self.start} or a parent",
        }[self.how]
        return f"{self.path} ({why})"


def _parent_of_project(path: Path) -> Path:
    for _ in PROJECT.parts:
        path = path.parent
    return path


def user_default(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/tdauto``; ``~/.local/share/tdauto`` when it is unset or relative
    (as the XDG base directory spec says)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path("~/.local/share").expanduser()
    return root / "tdauto"


def discover(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> Origin:
    """The data dir to use when none is given: the nearest project store, else the user's."""
    start = (cwd or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        candidate = folder / PROJECT
        if candidate.is_dir():
            return Origin(candidate, "project", start)
    return Origin(user_default(environ), "user", start)


def origin_of(path: Path, given: bool, environ: Mapping[str, str] | None = None) -> Origin:
    """Why ``path`` (the resolved data dir of settings) is the one: given (the variable or
    an argument), or found by ``discover``."""
    env = os.environ if environ is None else environ
    if given:
        value = env.get(VARIABLE, "")
        same = bool(value) and Path(value).expanduser().resolve() == path
        return Origin(path, "env" if same else "argument")
    found = discover(environ=environ)
    return Origin(path, found.how if found.path.resolve() == path else "project", found.start)


def of(settings: Settings) -> Origin:
    """The data dir of ``settings`` and why it is that one (given, found, per-user)."""
    return origin_of(settings.data_path, "data_dir" in settings.model_fields_set)


def require_store(settings: Settings) -> None:
    """For a reader, which must not make a store: in local mode, ``StoreNotFound`` saying
    where it looked and how to fix it when the data dir is not there."""
    missing = missing_store(of(settings)) if settings.local_mode else None
    if missing is not None:
        raise StoreNotFound(missing)


def missing_store(origin: Origin) -> str | None:
    """What to tell a read command when ``origin`` holds no store (it must not make one):
    where it looked and how to fix it; None when the store is there."""
    if origin.path.is_dir():
        return None
    fix = (
        f"set {VARIABLE} to your store, run from your project's folder, or make this one with "
        "`tdauto up` or `tdauto task create -f FILE`"
    )
    if origin.how in ("env", "argument"):
        given = VARIABLE if origin.how == "env" else "data_dir="
        return f"no tdauto store at {origin.path} ({given}); {fix}"
    return (
        f"no tdauto store found: {VARIABLE} is unset, there is no {PROJECT} in {origin.start} "
        f"or a parent, and no per-user store at {origin.path}; {fix}"
    )

"""The one gate every program an action runs goes through: a named allow-list, argv only.

A task's params must never choose a program that the operator did not list, whatever action
carries it: ``shell``, ``update``, ``validate``'s ``check`` and ``verify``'s ``command`` each
have a list set by an environment variable (empty = they run nothing), and ``TOOLS`` is the
fixed set of programs tdauto itself runs (``pg_dump``, ``redis-cli``, ...). ``ctx.run`` and
``run_command`` take the list as a required ``programs=`` keyword and check every command
here before it starts; params models call the same check at ``create_task``, and it runs
again at run time because the list may have changed in between.

The rules, the same for every list (docs/custom-actions.md, "Programs"):

- an argv list, never a shell string; no shell is started;
- ``argv[0]`` is a name looked up on the worker's ``PATH`` or an absolute path; a relative
  path (``./x``, ``bin/x``) and a path with ``..`` are refused;
- the program is allowed when the list has that name or path, or an entry that is the same
  file under the same name (``/bin/echo`` for ``echo``; not ``/bin/sh`` for ``ls`` on a
  busybox host, where both are one file);
- the command runs as that absolute path, so nothing in its environment can swap it;
- no loader variable (``LD_*``, ``DYLD_*``, ``GCONV_PATH``) that the task added or changed.

Listing a shell or an interpreter in a list gives a task that program's whole power back, so
don't.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tdauto.errors import ActionError, InvalidInput

if TYPE_CHECKING:
    from tdauto.settings import Settings

LOADER_PREFIXES = ("LD_", "DYLD_")
LOADER_NAMES = frozenset({"GCONV_PATH"})


class ProgramNotAllowed(InvalidInput, ActionError):
    """A program (or its environment) that its allow-list does not admit.

    Bad input at ``create_task`` (a ``ValueError``, so params models report it) and an
    ``ActionError`` of kind ``not_allowed`` when a handler meets it at run time."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.kind = "not_allowed"


@dataclass(frozen=True)
class ProgramList:
    """One allow-list: the environment variable that sets it and what it is for."""

    name: str
    variable: str | None  # the environment variable an operator sets; None: fixed
    users: str  # who runs its programs, as the user knows them
    example: str = ""
    field: str | None = None  # the Settings attribute holding it
    fixed: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()  # glob patterns where names are looked up besides PATH

    def entries(self, settings: Settings | None) -> list[str]:
        if self.field is None:
            return list(self.fixed)
        if settings is None:
            raise TypeError(f"the {self.name} allow-list is read from settings; pass them")
        return list(getattr(settings, self.field))


SHELL = ProgramList(
    "shell", "TDAUTO_SHELL_ALLOW", "the shell action", "rsync,/opt/app/bin/migrate", "shell_allow"
)
UPDATE = ProgramList(
    "update", "TDAUTO_UPDATE_ALLOW", "the update action", "apt-get,/opt/app/migrate", "update_allow"
)
CHECKS = ProgramList(
    "checks",
    "TDAUTO_CHECK_ALLOW",
    "validate's check and verify's command checks",
    "tar,/opt/app/bin/healthcheck",
    "check_allow",
)
TOOLS = ProgramList(
    "tools",
    None,
    "tdauto's own tools",
    fixed=("pg_dump", "pg_restore", "psql", "redis-cli", "redis-server"),
    dirs=("/usr/lib/postgresql/*/bin",),
)
LISTS = (SHELL, UPDATE, CHECKS, TOOLS)


def program_path(
    program: str,
    programs: ProgramList,
    settings: Settings | None,
    *,
    param: str = "argv",
    resolve: bool = True,
) -> str:
    """The absolute path ``program`` (an ``argv[0]``) runs as, if ``programs`` admits it.

    With ``resolve=False`` (at ``create_task``, maybe on another host than the worker) a
    program the list names exactly is enough; otherwise it must be found here. Raises
    ``ProgramNotAllowed`` naming ``param`` and the variable to set.
    """
    allow = programs.entries(settings)
    if not allow:
        raise ProgramNotAllowed(
            param,
            f"{programs.users} {'are' if programs.users.endswith('s') else 'is'} off: "
            f"{programs.variable} is empty; list there the programs to allow (names on PATH "
            f"or absolute paths), e.g. {programs.variable}={programs.example}",
        )
    if not program:
        raise ProgramNotAllowed(param, "the program (the first item of the argv) is empty")
    if "\0" in program:
        raise ProgramNotAllowed(param, "the program's name contains a NUL character")
    if os.sep in program and not os.path.isabs(program):
        raise ProgramNotAllowed(
            param,
            f"program {program!r} is a relative path; give a name on PATH or an absolute path",
        )
    if ".." in program.split(os.sep):
        raise ProgramNotAllowed(
            param, f"program {program!r} has '..' in its path; give the path without '..'"
        )
    listed = program in allow or program in {os.path.normpath(a) for a in allow}
    if listed and not resolve:
        return program
    found = program if os.path.isabs(program) else _lookup(program, programs.dirs)
    runnable = found is not None and os.path.isfile(found) and os.access(found, os.X_OK)
    if found is not None and runnable and _admits(found, allow, programs.dirs):
        return found
    if listed:
        raise ProgramNotAllowed(
            param,
            f"program {program!r} is allowed by {programs.variable or programs.users} but not "
            "found (or not executable) on this host: install it or fix the path",
        )
    shown = programs.variable or programs.users
    raise ProgramNotAllowed(
        param,
        f"program {program!r} is not allowed: {shown} lists {', '.join(allow)}"
        + (f"; add it there to let {programs.users} run it" if programs.variable else ""),
    )


def check_env(
    env: Mapping[str, str] | None,
    param: str = "env",
    inherited: Mapping[str, str] | None = None,
) -> None:
    """Refuse a loader variable that ``env`` adds to (or changes in) ``inherited``, the
    worker's own environment by default: it would load other code into an allowed program.
    Params that only add variables pass ``inherited={}``: none of them may be a loader's."""
    kept = os.environ if inherited is None else inherited
    for name, value in (env or {}).items():
        upper = name.upper()
        loader = upper.startswith(LOADER_PREFIXES) or upper in LOADER_NAMES
        if loader and kept.get(name) != value:
            raise ProgramNotAllowed(
                param,
                f"{name} is refused: a loader variable would load other code into the "
                "program; remove it (the worker's own environment is kept as it is)",
            )


def checked_argv(
    argv: Sequence[str],
    programs: ProgramList,
    settings: Settings | None,
    *,
    param: str = "argv",
    env: Mapping[str, str] | None = None,
    resolve: bool = True,
) -> list[str]:
    """``argv`` with its program as the absolute path it runs as, once ``programs`` admits it
    and ``env`` adds no loader variable; raises ``ProgramNotAllowed``."""
    if isinstance(argv, str) or not argv:
        raise ProgramNotAllowed(
            param, "a command is an argv list such as ['tar', '-tzf', 'x.tgz'], never a string"
        )
    args = [str(a) for a in argv]
    if any("\0" in arg for arg in args):
        raise ProgramNotAllowed(param, "arguments cannot contain NUL characters")
    path = program_path(args[0], programs, settings, param=param, resolve=resolve)
    check_env(env)
    return [path, *args[1:]]


def _lookup(name: str, dirs: Sequence[str]) -> str | None:
    """``name`` on this process's PATH, else in the newest of ``dirs`` that has it."""
    found = shutil.which(name)
    if found is not None:
        return found
    hits = _in_dirs(name, dirs)
    return hits[-1] if hits else None


def _in_dirs(name: str, dirs: Sequence[str]) -> list[str]:
    hits = [path for pattern in dirs for path in glob.glob(os.path.join(pattern, name))]
    return sorted(hits, key=_version_key)


def _version_key(path: str) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in path).split()
    return tuple(int(d) for d in digits) or (0,)


def _admits(found: str, allow: Sequence[str], dirs: Sequence[str]) -> bool:
    """Whether ``found`` (an absolute path) is an entry of ``allow``, or the same file under
    the same name as one (names are looked up as ``_lookup`` does)."""
    path, real, base = os.path.normpath(found), os.path.realpath(found), os.path.basename(found)
    for entry in allow:
        if os.path.isabs(entry):
            candidates = [entry]
        elif os.sep in entry:
            continue  # a relative entry admits nothing
        else:
            which = shutil.which(entry)
            candidates = ([which] if which else []) + _in_dirs(entry, dirs)
        for candidate in candidates:
            if os.path.normpath(candidate) == path:
                return True
            if os.path.basename(candidate) == base and os.path.realpath(candidate) == real:
                return True
    return False


__all__ = [
    "CHECKS",
    "LISTS",
    "SHELL",
    "TOOLS",
    "UPDATE",
    "ProgramList",
    "ProgramNotAllowed",
    "check_env",
    "checked_argv",
    "program_path",
]

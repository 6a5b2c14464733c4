"""Finding a task or an execution by what a person types: the full id, a unique prefix of
at least :data:`MIN_PREFIX` characters, or (tasks) the name. Below the CLI so the facade,
and the HTTP API on it, resolve ids one way (docs/architecture.md, "stores").

``IdPrefixes`` is the part of the store protocol a prefix needs; ``FileStore`` globs its
folders (``files_ids.py``), ``RedisStore`` scans its task hash and execution index with
``MATCH`` (``redis_ids.py``), neither reading a record that does not match."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from tdauto.errors import AmbiguousId, NotFound

if TYPE_CHECKING:
    from tdauto.models import Execution, Task
    from tdauto.store.backend import Store

MIN_PREFIX = 4
"""Shorter prefixes are not looked up: three hex digits match one id in 4,096 at random."""
SHOWN = 5
"""Matches an ambiguous prefix lists (one more is looked up, to say there are more)."""


class IdPrefixes(abc.ABC):
    """Ids that begin with a prefix, at most ``limit`` of them, in no particular order."""

    @abc.abstractmethod
    def task_ids_starting(self, prefix: str, limit: int) -> list[str]: ...

    @abc.abstractmethod
    def execution_ids_starting(self, prefix: str, limit: int) -> list[str]: ...


def _too_short(ref: str) -> str:
    short = len(ref) < MIN_PREFIX
    return f" (an id prefix needs at least {MIN_PREFIX} characters)" if short else ""


def find_task(store: Store, ref: str) -> Task:
    """The task whose id or name is ``ref``, else whose id begins with it. A name wins over
    a prefix: it is what the person typed in full."""
    task = store.get_task(ref) or store.get_task_by_name(ref)
    if task is not None:
        return task
    ids = store.task_ids_starting(ref, SHOWN + 1) if len(ref) >= MIN_PREFIX else []
    if len(ids) > 1:
        found = store.get_tasks(sorted(ids)[:SHOWN])
        raise AmbiguousId("task", ref, [_named(i, found.get(i)) for i in sorted(ids)])
    task = store.get_task(ids[0]) if ids else None
    if task is None:
        raise NotFound("task", ref, _too_short(ref))
    return task


def find_execution(store: Store, ref: str) -> Execution:
    """The execution whose id is ``ref``, else whose id begins with it."""
    execution = store.get_execution(ref)
    if execution is not None:
        return execution
    ids = store.execution_ids_starting(ref, SHOWN + 1) if len(ref) >= MIN_PREFIX else []
    if len(ids) > 1:
        raise AmbiguousId("execution", ref, sorted(ids))
    execution = store.get_execution(ids[0]) if ids else None
    if execution is None:
        raise NotFound("execution", ref, _too_short(ref))
    return execution


def _named(task_id: str, task: Task | None) -> str:
    return task_id if task is None else f"{task_id} {task.name!r}"


def unique_prefixes(ids: list[str], least: int = 8) -> dict[str, str]:
    """Each id's shortest start (``least`` characters or more) that no other of ``ids``
    begins with: what a table of *every* task shows (sorted, each id need only differ from
    its neighbours)."""
    ordered = sorted(set(ids))
    short: dict[str, str] = {}
    for i, task_id in enumerate(ordered):
        common = max(
            (
                _common(task_id, other)
                for other in ordered[max(i - 1, 0) : i + 2]
                if other != task_id
            ),
            default=0,
        )
        short[task_id] = task_id[: max(least, common + 1)]
    return short


def _common(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n

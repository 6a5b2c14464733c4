"""How tasks, run state, executions, logs and snapshots look at rest: shared by both stores.

Both backends store the same JSON records, so a snapshot of one restores into the other and
the parametrized test suite can hold them to one behaviour. Run state travels as
``{"next_ts": float | None, "last_ts": float | None}`` (UTC epoch seconds), apart from the
definition, and is merged into the ``Task`` only when it is read.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypedDict

from tdauto.errors import InvalidInput
from tdauto.models import Execution, ExecutionStatus, Task
from tdauto.store.backend import SNAPSHOT_FORMAT

RUN_STATE_FIELDS = frozenset({"next_run_at", "last_run_at"})

# Appended once when a log reaches its cap; later output is dropped. Keeping the head (not
# the tail) makes an append O(size of the text) for both stores, and the note says so.
LOG_TRUNCATED_NOTE = "\n[tdauto: log reached its size cap; later output dropped]\n"
LOG_TRUNCATED_NOTE_BYTES = LOG_TRUNCATED_NOTE.encode()
MIN_LOG_BYTES = 256


class RunState(TypedDict):
    next_ts: float | None
    last_ts: float | None


def empty_state() -> RunState:
    return {"next_ts": None, "last_ts": None}


def check_ts(field: str, ts: float | None) -> float | None:
    """Refuse NaN and infinities, which JSON and sorted sets cannot hold faithfully."""
    if ts is None:
        return None
    value = float(ts)
    if not math.isfinite(value):
        raise InvalidInput(field, f"must be a finite UTC epoch time in seconds, got {ts!r}")
    return value


def ts_to_dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def dt_to_ts(value: datetime) -> float:
    return value.timestamp()


# --- tasks -------------------------------------------------------------------------------------


def task_json(task: Task) -> str:
    """The stored form of a task: its definition and ids, never its run state."""
    return task.model_dump_json(exclude=set(RUN_STATE_FIELDS))


def upstream_of(task: Task) -> str | None:
    """The name of the task ``task`` runs after, if any."""
    return task.run_after.task if task.run_after is not None else None


def no_upstream(name: str) -> InvalidInput:
    """The error for a ``run_after`` naming a task that does not exist."""
    return InvalidInput("run_after.task", f"no task named {name!r}; create the upstream task first")


def run_after_cycle(
    task_id: str,
    name: str,
    upstream: str | None,
    holder: Callable[[str], str | None],
    upstream_by_id: Callable[[str], str | None],
    limit: int,
) -> list[str] | None:
    """The names of the loop ``task`` would close by running after ``upstream``, or None.

    ``holder`` maps a name to the id holding it and ``upstream_by_id`` an id to the name it
    runs after, both as they will be once the task is written. Only the task's own edge is
    new, so any new loop passes through it: following upstreams from ``upstream`` either ends
    or comes back to the task. ``limit`` (the number of tasks) bounds a walk that meets a loop
    stored before this check existed. ``run_after_cycle.lua`` walks the same way in Redis.
    """
    chain = [name]
    current = upstream
    for _ in range(limit + 1):
        if current is None:
            return None
        chain.append(current)
        held_by = task_id if current == name else holder(current)
        if held_by is None:
            return None
        if held_by == task_id:
            return chain
        current = upstream_by_id(held_by)
    return chain  # an old loop upstream of this task: refused as well


def cycle_error(chain: list[str]) -> InvalidInput:
    """The error for a ``run_after`` that would close a loop (``chain`` from the task on)."""
    path = ", ".join(f"{a!r} runs after {b!r}" for a, b in itertools.pairwise(chain))
    return InvalidInput(
        "run_after.task",
        f"{path}: a loop, each run would start the next forever; "
        "remove run_after from one of these tasks",
    )


def load_task(raw: str | bytes | dict[str, Any], state: RunState | dict[str, Any] | None) -> Task:
    """A stored task with ``state`` filled in as ``next_run_at`` / ``last_run_at``."""
    data = json.loads(raw) if isinstance(raw, str | bytes) else dict(raw)
    data.pop("next_run_at", None)
    data.pop("last_run_at", None)
    task = Task.model_validate(data)
    if state:
        task.next_run_at = ts_to_dt(state.get("next_ts"))
        task.last_run_at = ts_to_dt(state.get("last_ts"))
    return task


def parse_state(raw: str | bytes | None) -> RunState:
    if not raw:
        return empty_state()
    data = json.loads(raw)
    return {"next_ts": data.get("next_ts"), "last_ts": data.get("last_ts")}


# --- executions --------------------------------------------------------------------------------


def execution_json(execution: Execution) -> str:
    """The stored form of an execution: fields at their default left out (they read back as
    their default), which makes a record about 40% smaller, and a long run's, one entry per
    action, about half (each write of a run rewrites its record). The defaults of the
    execution models are thus part of the record format: changing one changes what old
    records read as. Code reading a record's JSON without the model gets its status with
    :func:`raw_status`."""
    return execution.model_dump_json(exclude_defaults=True)


def raw_status(data: dict[str, Any]) -> str:
    """The status of a stored execution's decoded JSON (PENDING, the default, is left out)."""
    return str(data.get("status", ExecutionStatus.PENDING.value))


def load_execution(raw: str | bytes | dict[str, Any]) -> Execution:
    if isinstance(raw, dict):
        return Execution.model_validate(raw)
    return Execution.model_validate_json(raw)


_IDENTITY = ("id", "task_id", "created_at")


def identity(execution: Execution) -> tuple[Any, ...]:
    """The fields the indexes are keyed on, taken before a mutation to check it after."""
    return tuple(getattr(execution, field) for field in _IDENTITY)


def check_immutable(before: tuple[Any, ...], after: Execution) -> None:
    """``update_execution`` may not move a record: the indexes are keyed on these fields."""
    for field, old in zip(_IDENTITY, before, strict=True):
        if getattr(after, field) != old:
            raise InvalidInput(
                field, "update_execution cannot change an execution's id, task_id or created_at"
            )


def newest_first(executions: Iterable[Execution]) -> list[Execution]:
    """Newest ``created_at`` first; ties broken by id so both stores agree."""
    return sorted(executions, key=lambda e: (e.created_at, e.id), reverse=True)


# --- logs --------------------------------------------------------------------------------------


def check_log_max_bytes(max_bytes: int) -> None:
    if max_bytes < MIN_LOG_BYTES:
        raise InvalidInput(
            "log_max_bytes", f"must be at least {MIN_LOG_BYTES} bytes, got {max_bytes}"
        )


def log_piece(size: int, data: bytes, max_bytes: int) -> bytes:
    """What to append to a log of ``size`` bytes so it never exceeds ``max_bytes``.

    Text fits whole until the log reaches ``max_bytes`` minus the note; then the part that fits
    (cut on a UTF-8 character boundary) and the note are appended, and nothing after.
    ``append_log.lua`` does the same arithmetic for Redis.
    """
    budget = max_bytes - len(LOG_TRUNCATED_NOTE_BYTES)
    if size + len(data) <= budget:
        return data
    if size > budget:  # already truncated (the note is in): drop
        return b""
    keep = budget - size
    while keep > 0 and (data[keep] & 0xC0) == 0x80:  # do not split a UTF-8 character
        keep -= 1
    return data[:keep] + LOG_TRUNCATED_NOTE_BYTES


# --- snapshots ---------------------------------------------------------------------------------


def make_snapshot(
    tasks: Iterable[dict[str, Any]],
    state: dict[str, RunState],
    executions: Iterable[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "format": SNAPSHOT_FORMAT,
        "tasks": sorted(tasks, key=lambda t: (t["name"], t["id"])),
        "state": dict(sorted(state.items())),
        "executions": sorted(executions, key=lambda e: (e["created_at"], e["id"])),
    }


def read_snapshot(
    snapshot: dict[str, Any],
) -> tuple[list[Task], dict[str, RunState], list[Execution]]:
    """Validate a snapshot before anything is replaced, so a bad file destroys nothing."""
    if snapshot.get("format") != SNAPSHOT_FORMAT:
        raise InvalidInput(
            "format",
            f"not a tdauto store snapshot (format {snapshot.get('format')!r}, "
            f"expected {SNAPSHOT_FORMAT!r}); pass the dict that snapshot() returned",
        )
    tasks = [load_task(record, None) for record in snapshot.get("tasks", [])]
    names: set[str] = set()
    for task in tasks:
        if task.name in names:
            raise InvalidInput("tasks", f"the snapshot holds two tasks named {task.name!r}")
        names.add(task.name)
    ids = {task.id for task in tasks}
    state: dict[str, RunState] = {}
    for task_id, raw in (snapshot.get("state") or {}).items():
        if task_id in ids:
            state[task_id] = {
                "next_ts": check_ts("state.next_ts", raw.get("next_ts")),
                "last_ts": check_ts("state.last_ts", raw.get("last_ts")),
            }
    executions = [load_execution(record) for record in snapshot.get("executions", [])]
    return tasks, state, executions

"""What a restored store holds: no run of the backup is still in flight.

A snapshot holds records only, not the leases, timers, admission places and reservations that
kept its in-flight runs going (docs/architecture.md, Storage), and the workers that ran them
are gone. Restored as they were, such runs would stay RUNNING or QUEUED until someone cancels
them, and hold their task's place meanwhile. So both stores' ``restore`` reads the snapshot
through :func:`restorable`, which ends each of them FAILED with the reason
``restored from backup`` (as the reaper ends an action whose worker was lost: kind ``lost``),
and then drops every lease, timer, place and reservation of the store it replaces.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from tdauto.models import Execution, ExecutionStatus, Task
from tdauto.store import records
from tdauto.store.records import RunState

RESTORED_REASON = "restored from backup"
LOST_KIND = "lost"
_FINAL = frozenset(s.value for s in ExecutionStatus if s.terminal)


def last_seen(execution: Execution) -> datetime:
    """The latest moment the record shows the run alive: when a restored run is said to end,
    so its duration and the alerts on recent failures are not stretched to the restore."""
    times = [execution.created_at, execution.started_at]
    for run in execution.actions:
        times += [run.sent_at, run.started_at, run.finished_at, run.waiting_since]
    return max(t for t in times if t is not None)


def settle(execution: Execution) -> bool:
    """End ``execution`` if it was in flight; True when it changed.

    Its actions under way (queued, running or waiting for a retry) fail with the reason and
    kind ``lost``; actions that had not started are SKIPPED, as after any final failure.
    """
    if execution.status.terminal:
        return False
    ended = last_seen(execution)
    for run in execution.actions:
        if run.status.terminal:
            continue
        if run.status is ExecutionStatus.PENDING:
            run.status = ExecutionStatus.SKIPPED
            continue
        run.status = ExecutionStatus.FAILED
        run.error, run.error_kind = RESTORED_REASON, LOST_KIND
        run.next_retry_at = None
        run.finished_at = ended
    execution.status = ExecutionStatus.FAILED
    execution.error = RESTORED_REASON
    execution.outcome = None
    execution.finished_at = ended
    return True


def restorable(
    snapshot: dict[str, Any],
) -> tuple[list[Task], dict[str, RunState], list[Execution]]:
    """The snapshot's records, validated (``records.read_snapshot``) and with every run that
    was in flight ended (:func:`settle`): what a store's ``restore`` writes."""
    tasks, states, executions = records.read_snapshot(snapshot)
    for execution in executions:
        settle(execution)
    return tasks, states, executions


def in_flight(raw_executions: Iterable[dict[str, Any]]) -> int:
    """How many of a snapshot's execution records were not ended (restore will end them)."""
    return sum(1 for data in raw_executions if records.raw_status(data) not in _FINAL)


def upstream_pairs(tasks: Iterable[Task]) -> dict[str, str]:
    """task id -> the name of the task it runs after, rebuilt from the restored tasks."""
    return {t.id: name for t in tasks if (name := records.upstream_of(t)) is not None}

"""Synthetic execution history: finished executions with known statuses and timings, written
to a store with their rollups, as the engine would leave them. Shared by the monitoring tests
and ``benchmarks/stats_cost.py``."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from tdauto.models import ActionRun, Execution, ExecutionStatus, ResourceClass, Trigger
from tdauto.monitoring.rollups import execution_delta
from tdauto.store.backend import Store

S = ExecutionStatus
STATUSES = [S.SUCCEEDED] * 14 + [S.FAILED, S.FAILED, S.TIMED_OUT, S.SKIPPED, S.MISSED, S.CANCELLED]


def synthetic_execution(n: int, start: datetime, rng: random.Random, tasks: int = 20) -> Execution:
    """Execution ``n`` of a history starting at ``start``, one every 30 s, in a final state."""
    status = rng.choice(STATUSES)
    created = start + timedelta(seconds=30 * n)
    ran = status not in (S.SKIPPED, S.MISSED)
    queued = timedelta(seconds=rng.uniform(0.0, 2.0))
    took = [rng.uniform(0.05, 20.0), rng.uniform(0.05, 5.0)]
    t = created + queued
    runs = []
    for i, (kind, klass) in enumerate((("backup", "storage"), ("cleanup", "cpu"))):
        run = ActionRun(index=i, type=kind, resource_class=ResourceClass(klass))
        if ran:
            run.sent_at, run.started_at = t - queued, t
            t = t + timedelta(seconds=took[i])
            run.finished_at = t
            run.status = S.SUCCEEDED if status is S.SUCCEEDED or i == 0 else status
        else:
            run.status = S.SKIPPED
        runs.append(run)
    return Execution(
        task_id=f"task-{n % tasks}",
        task_name=f"Task {n % tasks}",
        status=status,
        trigger=Trigger.SCHEDULE,
        scheduled_for=created,
        created_at=created,
        started_at=created + queued if ran else created,
        finished_at=t if ran else created,
        actions=runs,
    )


def write_history(
    store: Store, count: int, start: datetime | None = None, seed: int = 7, batch: int = 500
) -> list[Execution]:
    """Write ``count`` executions and their rollups; returns them."""
    rng = random.Random(seed)
    start = start or datetime(2024, 6, 1, tzinfo=UTC)
    made = [synthetic_execution(n, start, rng) for n in range(count)]
    for ex in made:
        store.create_execution(ex)
        store.add_rollup(execution_delta(ex))
    return made


def run_at(
    created: datetime, status: ExecutionStatus, task: str = "Daily Backup", took_s: float = 12.0
) -> Execution:
    """One finished run of ``task`` (a single ``backup`` action) created at ``created``."""
    started, finished = created + timedelta(seconds=1), created + timedelta(seconds=1 + took_s)
    run = ActionRun(index=0, type="backup", resource_class=ResourceClass.STORAGE, status=status)
    run.sent_at, run.started_at, run.finished_at = created, started, finished
    return Execution(
        task_id=f"task-{task}",
        task_name=task,
        status=status,
        trigger=Trigger.SCHEDULE,
        scheduled_for=created,
        created_at=created,
        started_at=started,
        finished_at=finished,
        actions=[run],
    )


def write_daily_runs(
    store: Store, end: datetime, days: int, failed: frozenset[int] = frozenset()
) -> list[Execution]:
    """One run a day for ``days`` days up to ``end`` (as the usage guide's daily backup
    makes), the ``failed`` day numbers (0 the oldest) FAILED, the others SUCCEEDED."""
    made = []
    for day in range(days):
        created = end - timedelta(days=days - day, hours=-1)
        status = S.FAILED if day in failed else S.SUCCEEDED
        made.append(run_at(created, status, took_s=10.0 + day))
    for ex in made:
        store.create_execution(ex)
        store.add_rollup(execution_delta(ex))
    return made

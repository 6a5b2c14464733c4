"""Misfire and overlap policies and conflict locks, driven with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tdauto.actions.registry import REGISTRY, load_plugins
from tdauto.engine.executions import new_execution
from tdauto.engine.lifecycle import complete
from tdauto.engine.runner import run_action, start_execution
from tdauto.engine.runtime import Runtime
from tdauto.models import Execution, ExecutionStatus, Task, Trigger
from tdauto.scheduler import compute_next_ts, dispatch_due
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.unit.test_dispatch import Recorder

S = ExecutionStatus


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    load_plugins([])
    settings = Settings(data_dir=tmp_path / "data")
    return Runtime(settings, FileStore(settings.data_path), REGISTRY, Recorder())


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def add_task(
    rt: Runtime, name: str = "nightly", created: str = "2026-11-20T10:00:00", **options: Any
) -> Task:
    data: dict[str, Any] = {
        "name": name,
        "type": "maintenance",
        "schedule": "daily",
        "schedule_config": {"hour": 2, "minute": 0},
        "actions": [{"type": "cleanup", "params": {"older_than": "30days", "dry_run": True}}],
        "created_at": datetime.fromisoformat(created).replace(tzinfo=UTC),
        **options,
    }
    task = Task.model_validate(data, context=rt.validation_context())
    rt.store.create_task(task, compute_next_ts(task, ts(created)))
    return task


def runs(rt: Runtime, task: Task) -> list[Execution]:
    return sorted(
        rt.store.list_executions(task.id, limit=None), key=lambda e: e.scheduled_for or e.created_at
    )


# --- misfire ----------------------------------------------------------------------------------


def test_run_once_after_downtime_runs_one_catchup_and_records_the_rest_missed(rt: Runtime) -> None:
    task = add_task(rt)  # next slot 2026-11-21 02:00; beat down until the 23rd, noon
    assert dispatch_due(rt, ts("2026-11-23T12:00:00")) == 1
    got = runs(rt, task)
    assert [e.status for e in got] == [S.MISSED, S.MISSED, S.PENDING]
    assert got[-1].trigger is Trigger.CATCHUP
    assert got[-1].scheduled_for == datetime(2026, 11, 23, 2, tzinfo=UTC)
    assert all("coalesced" in (e.error or "") for e in got[:2])
    stored = rt.store.get_task(task.id)
    assert stored is not None and stored.next_run_at == datetime(2026, 11, 24, 2, tzinfo=UTC)


def test_skip_records_every_missed_slot_and_runs_none(rt: Runtime) -> None:
    task = add_task(rt, misfire="skip")
    assert dispatch_due(rt, ts("2026-11-23T12:00:00")) == 0
    assert [e.status for e in runs(rt, task)] == [S.MISSED] * 3


def test_run_all_runs_up_to_max_catchup(rt: Runtime) -> None:
    task = add_task(rt, misfire="run_all", max_catchup=2)
    assert dispatch_due(rt, ts("2026-11-23T12:00:00")) == 2
    got = runs(rt, task)
    assert [e.status for e in got] == [S.MISSED, S.PENDING, S.PENDING]
    assert {e.trigger for e in got[1:]} == {Trigger.CATCHUP}


def test_slightly_late_is_an_ordinary_run(rt: Runtime) -> None:
    task = add_task(rt, misfire="skip")
    assert dispatch_due(rt, ts("2026-11-21T02:00:30")) == 1
    (ex,) = runs(rt, task)
    assert ex.trigger is Trigger.SCHEDULE and ex.status is S.PENDING


def test_skip_with_grace_is_a_deadline(rt: Runtime) -> None:
    task = add_task(rt, misfire="skip", misfire_grace="6h")
    assert dispatch_due(rt, ts("2026-11-21T07:59:00")) == 1  # within 6 h: runs
    assert dispatch_due(rt, ts("2026-11-22T08:30:00")) == 0  # 6.5 h late: missed
    assert [e.status for e in runs(rt, task)] == [S.PENDING, S.MISSED]


def test_missed_records_are_not_duplicated_by_a_second_beat(rt: Runtime) -> None:
    task = add_task(rt, misfire="skip")
    dispatch_due(rt, ts("2026-11-23T12:00:00"))
    rt.store.set_next_run(task.id, ts("2026-11-21T02:00:00"))  # a second beat saw the same
    dispatch_due(rt, ts("2026-11-23T12:00:01"))
    assert len(runs(rt, task)) == 3


def test_once_fires_exactly_once_across_restarts(rt: Runtime) -> None:
    task = add_task(
        rt, name="one shot", schedule="once", schedule_config={"at": "2026-11-21T05:00:00Z"}
    )
    assert dispatch_due(rt, ts("2026-11-21T05:00:00")) == 1
    stored = rt.store.get_task(task.id)
    assert stored is not None and stored.next_run_at is None
    again = Runtime(rt.settings, FileStore(rt.settings.data_path), REGISTRY, Recorder())
    assert dispatch_due(again, ts("2026-12-01T00:00:00")) == 0
    assert len(runs(rt, task)) == 1


# --- overlap and conflict locks ---------------------------------------------------------------


def start(rt: Runtime, task: Task) -> Execution:
    ex = new_execution(task, rt.registry, Trigger.MANUAL)
    rt.store.create_execution(ex)
    start_execution(rt, ex.id)
    got = rt.store.get_execution(ex.id)
    assert got is not None
    return got


def finish_run(rt: Runtime, ex: Execution) -> None:
    assert run_action(rt, ex.id, 0) is S.SUCCEEDED


def test_skip_skips_while_the_previous_runs(rt: Runtime) -> None:
    task = add_task(rt)
    first = start(rt, task)
    second = start(rt, task)
    assert first.status is S.QUEUED
    assert second.status is S.SKIPPED and first.id in (second.error or "")
    finish_run(rt, first)
    assert start(rt, task).status is S.QUEUED


def test_queue_buffers_one_and_starts_it_when_the_first_ends(rt: Runtime) -> None:
    task = add_task(rt, overlap="queue")
    first, second, third = start(rt, task), start(rt, task), start(rt, task)
    assert (first.status, second.status, third.status) == (S.QUEUED, S.WAITING, S.SKIPPED)
    assert "already queued" in (third.error or "")
    sent = len(rt.send.sent)  # type: ignore[attr-defined]
    finish_run(rt, first)
    promoted = rt.store.get_execution(second.id)
    assert promoted is not None and promoted.status is S.QUEUED
    assert rt.send.sent[sent:][-1][1] == [second.id, 0]  # type: ignore[attr-defined]


def test_allow_runs_side_by_side_up_to_max_concurrent(rt: Runtime) -> None:
    task = add_task(rt, overlap="allow", max_concurrent=2)
    got = [start(rt, task) for _ in range(3)]
    assert [e.status for e in got] == [S.QUEUED, S.QUEUED, S.WAITING]
    unlimited = add_task(rt, name="free", overlap="allow")
    assert {start(rt, unlimited).status for _ in range(5)} == {S.QUEUED}


def test_replace_cancels_the_running_one(rt: Runtime) -> None:
    task = add_task(rt, overlap="replace")
    first = start(rt, task)
    second = start(rt, task)
    assert second.status is S.QUEUED
    old = rt.store.get_execution(first.id)
    assert old is not None and old.status is S.CANCELLED and second.id in (old.error or "")
    assert run_action(rt, first.id, 0) is None  # its queued action does not run


def test_conflict_lock_across_tasks(rt: Runtime) -> None:
    a = add_task(rt, name="backup db", lock="db")
    b = add_task(rt, name="vacuum db", lock="db")
    c = add_task(rt, name="migrate db", lock="db", overlap="queue")
    other = add_task(rt, name="unrelated", lock="web")
    running = start(rt, a)
    assert start(rt, b).status is S.SKIPPED
    waiting = start(rt, c)
    assert waiting.status is S.WAITING and "lock 'db'" in (waiting.error or "")
    assert start(rt, other).status is S.QUEUED
    finish_run(rt, running)
    promoted = rt.store.get_execution(waiting.id)
    assert promoted is not None and promoted.status is S.QUEUED


def test_a_lost_release_heals_itself(rt: Runtime) -> None:
    task = add_task(rt)
    first = start(rt, task)
    # the execution ended but its release was lost (a crashed process)
    rt.store.update_execution(first.id, lambda e: setattr(e, "status", S.FAILED))
    assert start(rt, task).status is S.QUEUED


def test_cancel_frees_the_place(rt: Runtime) -> None:
    task = add_task(rt, overlap="queue")
    first, second = start(rt, task), start(rt, task)
    complete(rt, first.id, S.CANCELLED, "cancelled by user")
    promoted = rt.store.get_execution(second.id)
    assert promoted is not None and promoted.status is S.QUEUED

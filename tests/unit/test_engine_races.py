"""Races of the engine's hot path (found in review): two triggers admitted at once, a stale
cached record deciding a duplicate delivery, a stopped handler that has not returned yet."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tdauto import AutomationSystems
from tdauto.actions.registry import REGISTRY, load_plugins
from tdauto.engine.executions import new_execution
from tdauto.engine.runner import run_action, start_execution, start_new
from tdauto.engine.runtime import Runtime
from tdauto.engine.watch import LEASES, Outcome, lease_member, run_watched
from tdauto.models import Execution, ExecutionStatus, Task, Trigger
from tdauto.resources.ledger import reservation_key
from tdauto.scheduler import compute_next_ts, dispatch_due
from tdauto.settings import Settings
from tdauto.store.backend import StaleDefinition
from tdauto.store.redis import RedisStore
from tests.unit.test_dispatch import Recorder, add_daily, rt, ts  # noqa: F401
from tests.unit.test_watch import _context, _define, _runtime

S = ExecutionStatus


def _cleanup_task(runtime: Runtime, **changes: Any) -> Task:
    """A daily task "sweep" with one dry-run cleanup action, ``changes`` applied."""
    spec = {
        "name": "sweep",
        "type": "maintenance",
        "schedule": "daily",
        "schedule_config": {"hour": 2, "minute": 0},
        "actions": [{"type": "cleanup", "params": {"older_than": "30days", "dry_run": True}}],
        **changes,
    }
    return Task.model_validate(spec, context=runtime.validation_context())


def test_two_triggers_at_once_never_both_run_a_skip_task(rt: Runtime) -> None:  # noqa: F811
    # Given a task with the default overlap policy (skip) and two triggers at once, the first
    # one's record landing a moment after the second trigger started
    task = add_daily(rt, "2026-11-26T10:00:00")
    a = new_execution(task, rt.registry, Trigger.MANUAL)
    b = new_execution(task, rt.registry, Trigger.MANUAL)
    store = rt.store
    a_writing, b_done = threading.Event(), threading.Event()
    real_create = store.create_execution

    def create(ex: Execution) -> bool:
        if ex.id == a.id:
            a_writing.set()
            b_done.wait(10)
        return real_create(ex)

    store.create_execution = create  # type: ignore[method-assign]
    first = threading.Thread(target=lambda: start_new(rt, a, task))
    first.start()
    a_writing.wait(10)
    start_new(rt, b, task)
    b_done.set()
    first.join()

    # Then exactly one of them runs and the other is skipped
    statuses = sorted(store.get_execution(e.id).status.value for e in (a, b))  # type: ignore[union-attr]
    assert statuses == ["QUEUED", "SKIPPED"]


def test_a_duplicate_decided_on_a_stale_record_keeps_the_runners_reservation(
    tmp_path: Path, redis_url: str
) -> None:
    load_plugins([])
    settings = Settings(data_dir=tmp_path / "data", host="hostA")
    a = Runtime(settings, RedisStore(redis_url, prefix="races"), REGISTRY, Recorder())
    b_store = RedisStore(redis_url, prefix="races")  # the worker process that runs it
    task = _cleanup_task(
        a, name="heavy", resources={"cpu": 60}, created_at=datetime(2026, 11, 26, 10, tzinfo=UTC)
    )
    a.store.create_task(task, compute_next_ts(task, ts("2026-11-26T10:00:00"), "UTC"))
    dispatch_due(a, ts("2026-11-27T02:00:00"))
    (ex,) = a.store.list_executions(task.id)
    start_execution(a, ex.id)  # process A queued action 0: its cached record shows it QUEUED
    key = reservation_key(ex.id, 0)
    # Given worker B reserved room on hostB, claimed the action and runs it under a lease
    assert b_store.reserve("hostB", key, {"cpu": 60, "memory": 0, "storage": 0})

    def begin(e: Execution) -> None:
        r = e.actions[0]
        r.status, r.attempts, r.host = S.RUNNING, 1, "hostB"
        e.status = S.RUNNING

    b_store.update_execution(ex.id, begin)
    b_store.timer_set(LEASES, lease_member(ex.id, 0, 1), time.time() + 20)

    # When a redelivery of the same message reaches process A
    assert run_action(a, ex.id, 0) is None

    # Then it is dropped, and B's attempt keeps its state and its reservation
    assert b_store.get_execution(ex.id).actions[0].status is S.RUNNING  # type: ignore[union-attr]
    assert key in b_store.reservations()


def _sleeper(ctx: Any) -> dict[str, Any]:
    time.sleep(6)  # one C call: a stop reaches it only when the call returns
    return {}


def test_a_stopped_handler_keeps_its_lease_until_it_returns(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path, lease_ttl_s=4.0, lease_renew_s=1.0, kill_grace_s=0.5)
    runtime.store.timer_set(LEASES, "ex1:0:1", time.time() + 4.0)  # as the attempt's start does

    result = run_watched(runtime, _define(_sleeper), _context(runtime), {}, timeout_s=1.0)
    returned = time.time()

    # the lease never fell due while the handler ran (the reaper could not re-queue it)
    due = runtime.store.timer_get(LEASES, "ex1:0:1")
    assert result.outcome is Outcome.TIMEOUT
    assert due is not None and due > returned


def test_the_record_a_message_carries_saves_the_read_and_a_stale_one_runs_nothing(
    tmp_path: Path, redis_url: str
) -> None:
    load_plugins([])
    settings = Settings(data_dir=tmp_path / "data", host="hostA")
    app = Runtime(settings, RedisStore(redis_url, prefix="hint"), REGISTRY, Recorder())
    task = _cleanup_task(app, overlap="allow")
    app.store.create_task(task, None)

    def worker() -> tuple[Runtime, list[str]]:
        """Another process's runtime (it never saw the run) and the ids it reads."""
        store = RedisStore(redis_url, prefix="hint")
        reads: list[str] = []
        real_get = store.get_execution
        store.get_execution = lambda i: reads.append(i) or real_get(i)  # type: ignore[method-assign]
        return Runtime(settings, store, REGISTRY, Recorder()), reads

    # Given a triggered run whose message carries the record as the trigger wrote it
    fresh = start_new(app, new_execution(task, app.registry, Trigger.MANUAL), task)
    record = app.store.written_record(fresh.id)
    assert record is not None and '"QUEUED"' in record

    # When a worker runs the action with that record
    runner, reads = worker()
    assert run_action(runner, fresh.id, 0, hint=record) is S.SUCCEEDED

    # Then it never read the record first, and the run succeeded
    assert reads == []
    assert app.store.get_execution(fresh.id).status is S.SUCCEEDED  # type: ignore[union-attr]

    # Given a run cancelled after its message left (the message's record shows it QUEUED)
    late = start_new(app, new_execution(task, app.registry, Trigger.MANUAL), task)
    stale = app.store.written_record(late.id)
    app.store.update_execution(late.id, lambda e: setattr(e, "status", S.CANCELLED))

    # Then the worker that gets it runs nothing and the run stays CANCELLED
    runner, reads = worker()
    assert run_action(runner, late.id, 0, hint=stale) is None
    after = app.store.get_execution(late.id)
    assert after is not None and after.status is S.CANCELLED
    assert after.actions[0].attempts == 0


def test_a_trigger_after_an_edit_elsewhere_runs_the_new_definition(
    tmp_path: Path, redis_url: str
) -> None:
    # Given two processes on one Redis; the first triggered the task (and keeps its definition)
    here = AutomationSystems(broker_url=redis_url, data_dir=tmp_path / "a", host="a")
    there = AutomationSystems(broker_url=redis_url, data_dir=tmp_path / "b", host="b")
    try:
        task = asyncio.run(
            here.create_task(
                name="sweep",
                type="maintenance",
                schedule="interval",
                schedule_config={"every": "1d"},
                overlap="allow",
                actions=[{"type": "cleanup", "params": {"older_than": "30days", "dry_run": True}}],
            )
        )
        first = here.trigger_sync(task.id)
        assert first.actions[0].params["older_than"] == "30days"

        # When the other process edits it, and the first triggers it again
        asyncio.run(
            there.update_task(
                task.id,
                actions=[{"type": "cleanup", "params": {"older_than": "7days", "dry_run": True}}],
            )
        )
        second = here.trigger_sync(task.id)

        # Then the new run is made from the new definition, as stored
        assert second.actions[0].params["older_than"] == "7days"
        stored = here.get_execution_sync(second.id)
        assert stored.actions[0].params["older_than"] == "7days"
    finally:
        here.app.close()
        there.app.close()


def test_a_run_made_from_an_old_definition_is_refused_after_another_thread_read_the_new(
    tmp_path: Path, redis_url: str
) -> None:
    load_plugins([])
    store, elsewhere = RedisStore(redis_url, prefix="defs"), RedisStore(redis_url, prefix="defs")
    app = Runtime(Settings(data_dir=tmp_path / "data"), store, REGISTRY, Recorder())
    task, _ = store.create_task(_cleanup_task(app), None)
    # Given one thread's run made from the definition as it was
    old = store.task_definition(task.id)
    assert old is not None
    run = new_execution(old.task, REGISTRY, Trigger.MANUAL)
    # and, meanwhile, an edit elsewhere that another thread of this process has read
    edited = task.model_copy(update={"priority": 9})
    elsewhere.save_task(edited)
    assert store.task_definition(task.id, fresh=True).task.priority == 9  # type: ignore[union-attr]

    # When the first thread records its run, Then it is refused and nothing is written
    with pytest.raises(StaleDefinition):
        store.create_admitted(run, None, None, lambda e: None, old.version)
    assert store.get_execution(run.id) is None

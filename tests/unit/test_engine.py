"""The engine on one thread: retries, recovery, timeouts, cancel, leases, dependencies."""

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
from tdauto.engine.lifecycle import complete
from tdauto.engine.runner import RETRIES, run_action, start_execution
from tdauto.engine.runtime import Runtime
from tdauto.engine.timers import dispatch_retries, reap
from tdauto.engine.watch import LEASES, lease_member
from tdauto.models import Execution, ExecutionStatus, Task, Trigger
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.unit.test_dispatch import Recorder

S = ExecutionStatus


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    load_plugins(["tests.integration.plugin_actions"])
    settings = Settings(data_dir=tmp_path / "data", allowed_paths=[tmp_path])
    return Runtime(settings, FileStore(settings.data_path), REGISTRY, Recorder())


def add(rt: Runtime, name: str, actions: list[dict[str, Any]], **options: Any) -> Task:
    data = {
        "name": name,
        "type": "maintenance",
        "schedule": "daily",
        "schedule_config": {"hour": 2},
        "actions": actions,
        **options,
    }
    task = Task.model_validate(data, context=rt.validation_context())
    rt.store.create_task(task, None)
    return task


def trigger(rt: Runtime, task: Task) -> Execution:
    ex = new_execution(task, rt.registry, Trigger.MANUAL)
    rt.store.create_execution(ex)
    start_execution(rt, ex.id)
    return ex


def get(rt: Runtime, ex: Execution) -> Execution:
    got = rt.store.get_execution(ex.id)
    assert got is not None
    return got


def drive(rt: Runtime, ex: Execution, rounds: int = 20) -> Execution:
    """Deliver every message sent for ``ex`` (retries made due at once) until it ends."""
    sent: list[tuple[str, list[Any], str]] = rt.send.sent  # type: ignore[attr-defined]
    done = 0
    for _ in range(rounds):
        while done < len(sent):
            name, args, _queue = sent[done]
            done += 1
            if name.startswith("tdauto.action.") and args[0] == ex.id:
                run_action(rt, *args)
        if get(rt, ex).status.terminal:
            break
        dispatch_retries(rt, time.time() + 3600)
    return get(rt, ex)


def test_a_failing_action_is_retried_then_succeeds(rt: Runtime) -> None:
    task = add(rt, "flaky", [{"type": "flaky", "params": {"fail_times": 2}}], retry={"max": 2})
    ex = drive(rt, trigger(rt, task))
    assert ex.status is S.SUCCEEDED
    (run,) = ex.actions
    assert run.attempts == 3 and run.output == {"attempt": 3}
    assert "attempt 2 fails" in rt.store.read_log(ex.id)


def test_retry_waits_for_its_backoff_in_the_engine(rt: Runtime) -> None:
    task = add(
        rt, "slow retry", [{"type": "flaky"}], retry={"max": 1, "backoff": "1h", "jitter": False}
    )
    ex = trigger(rt, task)
    name, args, queue = rt.send.sent[-1]  # type: ignore[attr-defined]
    assert run_action(rt, *args) is S.FAILED
    run = get(rt, ex).actions[0]
    assert run.status is S.RETRYING and run.next_retry_at is not None
    assert queue == "tdauto.cpu"
    assert dispatch_retries(rt, time.time() + 60) == 0  # not due: an hour of backoff
    assert rt.store.timer_get(RETRIES, f"{ex.id}:0") is not None
    assert dispatch_retries(rt, time.time() + 3601) == 1
    resent = rt.send.sent[-1]  # type: ignore[attr-defined]
    assert resent == (name, args, "tdauto.cpu")  # the retry stays on its class's queue


def test_retry_on_filters_error_kinds(rt: Runtime) -> None:
    task = add(rt, "picky", [{"type": "flaky"}], retry={"max": 3, "retry_on": ["timeout"]})
    ex = drive(rt, trigger(rt, task))
    assert ex.status is S.FAILED and ex.actions[0].attempts == 1
    assert ex.actions[0].error_kind == "flaky"


def test_after_the_last_retry_recovery_runs_and_the_run_fails(rt: Runtime, tmp_path: Path) -> None:
    task = add(
        rt,
        "deploy",
        [
            {
                "type": "flaky",
                "params": {"fail_times": 9},
                "retry": {"max": 1},
                "on_failure": [
                    {"type": "cleanup", "params": {"older_than": "1d", "dry_run": True}}
                ],
            },
            {"type": "cleanup", "params": {"older_than": "1d"}},
        ],
        on_failure=[{"type": "effect", "params": {"dir": str(tmp_path / "alert")}}],
    )
    ex = drive(rt, trigger(rt, task))
    assert ex.status is S.FAILED
    assert ex.error is not None and "action 0 (flaky) failed" in ex.error
    phases = [(r.type, r.phase, r.status) for r in ex.actions]
    assert phases == [
        ("flaky", "main", S.FAILED),
        ("cleanup", "main", S.SKIPPED),
        ("cleanup", "recovery", S.SUCCEEDED),
        ("effect", "recovery", S.SUCCEEDED),
    ]
    assert ex.actions[0].attempts == 2
    assert (tmp_path / "alert" / "effects.log").exists()


def test_action_timeout_ends_timed_out(rt: Runtime, tmp_path: Path) -> None:
    task = add(
        rt,
        "hung",
        [{"type": "effect", "params": {"dir": str(tmp_path), "seconds": 60}, "timeout": 1}],
    )
    started = time.monotonic()
    ex = drive(rt, trigger(rt, task))
    assert ex.status is S.TIMED_OUT and ex.actions[0].status is S.TIMED_OUT
    assert "timed out" in (ex.actions[0].error or "")
    assert time.monotonic() - started < 30


def test_deadline_bounds_the_whole_run(rt: Runtime, tmp_path: Path) -> None:
    task = add(
        rt,
        "bounded",
        [{"type": "effect", "params": {"dir": str(tmp_path), "seconds": 60}}],
        deadline="1s",
    )
    ex = drive(rt, trigger(rt, task))
    assert ex.status is S.TIMED_OUT


def test_cancel_reaches_a_running_action(rt: Runtime, tmp_path: Path) -> None:
    task = add(rt, "long", [{"type": "effect", "params": {"dir": str(tmp_path), "seconds": 60}}])
    ex = trigger(rt, task)
    _, args, _ = rt.send.sent[-1]  # type: ignore[attr-defined]
    worker = threading.Thread(target=run_action, args=(rt, *args))
    started = time.monotonic()
    worker.start()
    while not (tmp_path / "started-1").exists():
        time.sleep(0.05)
    complete(rt, ex.id, S.CANCELLED, "cancelled by user")
    worker.join(30)
    assert not worker.is_alive() and time.monotonic() - started < 30
    done = get(rt, ex)
    assert done.status is S.CANCELLED and done.actions[0].status is S.CANCELLED


def test_an_expired_lease_is_requeued_then_failed(rt: Runtime) -> None:
    task = add(rt, "lost", [{"type": "cleanup", "params": {"older_than": "1d"}}])
    ex = trigger(rt, task)

    def dies(attempts: int) -> None:
        def running(e: Execution) -> None:
            e.status = S.RUNNING
            e.actions[0].status = S.RUNNING
            e.actions[0].attempts = attempts
            e.actions[0].host = "gone"

        rt.store.update_execution(ex.id, running)
        rt.store.timer_set(LEASES, lease_member(ex.id, 0, attempts), time.time() - 1)

    for n in range(1, rt.settings.lost_requeues + 1):
        dies(n)
        assert reap(rt)["requeued"] == 1
        run = get(rt, ex).actions[0]
        assert (run.status, run.lost, run.error_kind) == (S.QUEUED, n, "lost")
    dies(rt.settings.lost_requeues + 1)
    assert reap(rt)["lost"] == 1
    assert get(rt, ex).status is S.FAILED


def test_a_duplicate_delivery_of_a_running_action_is_dropped(rt: Runtime) -> None:
    task = add(rt, "dup", [{"type": "cleanup", "params": {"older_than": "1d"}}])
    ex = trigger(rt, task)

    def running(e: Execution) -> None:
        e.actions[0].status = S.RUNNING
        e.actions[0].attempts = 1

    rt.store.update_execution(ex.id, running)
    rt.store.timer_set(LEASES, lease_member(ex.id, 0, 1), time.time() + 60)
    assert run_action(rt, ex.id, 0) is None
    assert get(rt, ex).actions[0].attempts == 1


def test_queue_timeout(rt: Runtime) -> None:
    task = add(rt, "queued", [{"type": "cleanup", "params": {"older_than": "1d"}}], queue_timeout=1)
    ex = trigger(rt, task)
    assert reap(rt, time.time() + 5)["queue_timeout"] == 1
    done = get(rt, ex)
    assert done.status is S.TIMED_OUT and "queue_timeout" in (done.actions[0].error or "")


def test_run_after_follows_the_upstream_outcome(rt: Runtime) -> None:
    upstream = add(rt, "A", [{"type": "cleanup", "params": {"older_than": "1d"}}])
    on_success = add(
        rt, "B", [{"type": "cleanup", "params": {"older_than": "1d"}}], run_after={"task": "A"}
    )
    on_failure = add(
        rt,
        "C",
        [{"type": "cleanup", "params": {"older_than": "1d"}}],
        run_after={"task": "A", "on": "failure"},
    )
    for task in (on_success, on_failure):
        rt.store.set_upstream(task.id, "A")
    ex = drive(rt, trigger(rt, upstream))
    assert ex.status is S.SUCCEEDED
    (b,) = rt.store.list_executions(on_success.id)
    assert b.trigger is Trigger.EVENT and b.triggered_by == {
        "execution_id": ex.id,
        "task": "A",
        "status": "SUCCEEDED",
    }
    assert rt.store.list_executions(on_failure.id) == []


def test_commands_log_their_output(rt: Runtime) -> None:
    task = add(rt, "echo", [{"type": "command", "params": {"argv": ["echo", "hello from echo"]}}])
    ex = drive(rt, trigger(rt, task))
    assert ex.status is S.SUCCEEDED
    assert "hello from echo" in rt.store.read_log(ex.id)
    assert datetime.now(UTC) >= ex.finished_at  # type: ignore[operator]


def test_each_system_in_a_process_runs_its_tasks_on_its_own_store(tmp_path: Path) -> None:
    """A Celery shared task (``app.task``'s default) is registered in every app finalized
    after it too, one app's task per name winning; tdauto's tasks close over their system's
    runtime, so both systems would then run that one system's tasks, on its store."""
    spec: dict[str, Any] = {
        "name": "sweep",
        "type": "maintenance",
        "schedule": "daily",
        "schedule_config": {"hour": 2},
        "actions": [{"type": "cleanup", "params": {"older_than": "30days", "dry_run": True}}],
    }
    systems = [AutomationSystems(data_dir=tmp_path / name) for name in ("one", "two")]
    try:
        for system in systems:
            task = asyncio.run(system.create_task(**spec))
            ex = system.trigger_sync(task.id)

            # When the system's worker tasks run the action it queued, and tdauto.run again
            result = system.app.tasks["tdauto.action.cleanup"].apply(args=[ex.id, 0]).get()
            started = system.app.tasks["tdauto.run"].apply(args=[ex.id]).get()

            # Then they ran on its own store (tdauto.run finds the run, already started)
            assert (result, started) == ("SUCCEEDED", False)
            assert system.get_execution_sync(ex.id).status is S.SUCCEEDED
    finally:
        for system in systems:
            system.app.close()


def test_a_run_that_ends_with_nothing_waiting_lists_no_executions(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a data dir that already holds finished runs
    task = add(rt, "quick", [{"type": "flaky", "params": {"fail_times": 0}}], overlap="allow")
    for _ in range(3):
        assert drive(rt, trigger(rt, task)).status is S.SUCCEEDED
    listed: list[Any] = []
    listing = FileStore.list_executions

    def spy(self: FileStore, *args: Any, **kwargs: Any) -> list[Execution]:
        listed.append((args, kwargs))
        return listing(self, *args, **kwargs)

    monkeypatch.setattr(FileStore, "list_executions", spy)

    # When one more run ends, with no run WAITING
    assert drive(rt, trigger(rt, task)).status is S.SUCCEEDED

    # Then its end read the WAITING count from the index, not by scanning every record
    assert listed == []

"""An action's success written behind (``tdauto.engine.behind``): the worker's task returns
while the write runs on its own thread; the thread's next task waits for it; a failed
write is left to the reaper; a failure is still written in line; a forked pool child and an
exiting one finish their own writes; what a write sends is the child of the task it came
from; ``tdauto worker`` turns it on for prefork pools only."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.signals import worker_process_shutdown, worker_shutdown
from click.testing import CliRunner

from tdauto import AutomationSystems, cli
from tdauto.cli import base as cli_base
from tdauto.engine.behind import SIGNAL_UID, WriteBehind, install
from tdauto.engine.runner import run_action
from tdauto.engine.runtime import Runtime
from tdauto.engine.timers import reap
from tdauto.engine.watch import LEASES, lease_member
from tdauto.errors import StoreError
from tdauto.models import Execution, ExecutionStatus
from tdauto.resources import worker_hooks
from tests.unit.test_engine import add, get, rt, trigger  # noqa: F401
from tests.unit.test_outbox import CLEANUP, _queued, _spec

S = ExecutionStatus
QUICK = [{"type": "cleanup", "params": {"older_than": "1d"}}]


def _behind_writes(rt: Runtime, before: Callable[[], None]) -> None:  # noqa: F811
    """Run ``before`` ahead of every record write made on the write-behind thread."""
    real = rt.store.update_execution

    def update(execution_id: str, mutate: Any, base: Execution | None = None) -> Execution:
        if threading.current_thread().name.startswith("tdauto-behind"):
            before()
        return real(execution_id, mutate, base)

    rt.store.update_execution = update  # type: ignore[method-assign]


def test_the_task_returns_before_its_success_lands_and_its_next_task_waits_for_it(
    rt: Runtime,  # noqa: F811
) -> None:
    behind = rt.behind = WriteBehind()
    ex = trigger(rt, add(rt, "quick", QUICK))
    go = threading.Event()
    _behind_writes(rt, lambda: go.wait(30))

    # When a worker's task runs the action while its success cannot be written yet
    assert run_action(rt, ex.id, 0) is S.SUCCEEDED

    # Then the task has returned with the action still recorded running, under its lease
    running = get(rt, ex)
    assert (running.status, running.actions[0].status) == (S.RUNNING, S.RUNNING)
    lease = lease_member(ex.id, 0, 1)
    assert rt.store.timer_get(LEASES, lease) is not None

    # When the write may go on, a moment after the thread's next task began
    threading.Timer(0.2, go.set).start()
    behind.drain()

    # Then that task starts only once the success is recorded, the lease taken with it
    done = get(rt, ex)
    assert (done.status, done.actions[0].status, done.actions[0].attempts) == (
        S.SUCCEEDED,
        S.SUCCEEDED,
        1,
    )
    assert rt.store.timer_get(LEASES, lease) is None


def test_a_failed_attempt_is_written_before_the_task_returns(rt: Runtime) -> None:  # noqa: F811
    rt.behind = WriteBehind()
    _behind_writes(rt, lambda: pytest.fail("a failure must not be written behind"))
    ex = trigger(rt, add(rt, "fails", [{"type": "fail", "params": {}}], retry={"max": 1}))

    assert run_action(rt, ex.id, 0) is S.FAILED

    # the retry is decided and recorded by the time the task returns
    assert get(rt, ex).actions[0].status is S.RETRYING


def test_a_success_that_cannot_be_written_is_left_to_the_reaper(
    rt: Runtime,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    behind = rt.behind = WriteBehind()
    ex = trigger(rt, add(rt, "unwritten", QUICK))

    def store_down() -> None:
        raise StoreError("redis store: connection refused")

    real = rt.store.update_execution
    _behind_writes(rt, store_down)

    # When the success cannot be written (the store is gone for longer than its retries)
    with caplog.at_level(logging.ERROR, logger="tdauto.engine.behind"):
        assert run_action(rt, ex.id, 0) is S.SUCCEEDED
        behind.drain()  # the task after it is not failed by it

    # Then it is logged, and the action stays running under its lease
    assert "the reaper re-queues it" in caplog.text
    assert get(rt, ex).actions[0].status is S.RUNNING
    lease = lease_member(ex.id, 0, 1)
    due = rt.store.timer_get(LEASES, lease)
    assert due is not None

    # When the lease expires, the reaper re-queues the action, and a worker runs it again
    rt.store.update_execution = real  # type: ignore[method-assign]
    assert reap(rt, due + 1)["requeued"] == 1
    assert get(rt, ex).actions[0].status is S.QUEUED
    assert run_action(rt, ex.id, 0) is S.SUCCEEDED
    behind.drain()
    done = get(rt, ex)
    assert (done.status, done.actions[0].attempts, done.actions[0].lost) == (S.SUCCEEDED, 2, 1)


def test_a_forked_child_writes_on_its_own_thread(tmp_path: Path) -> None:
    # Given a process whose writer thread exists
    behind = WriteBehind()
    behind.submit(lambda: None)
    behind.drain()
    marker = tmp_path / "written-in-child"

    # When it forks (as a prefork pool does) and the child writes behind, then exits
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 2
        try:
            behind.submit(marker.touch)
            behind.drain_all()
            code = 0 if marker.exists() else 1
        finally:
            os._exit(code)

    # Then the child's write landed before it exited (the parent's thread is not in the child:
    # a write queued to it would never run, and the child would hang)
    deadline = time.monotonic() + 30
    while (reaped := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on its write")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(reaped[1]) == 0
    assert marker.exists()


@pytest.fixture
def hooked(rt: Runtime) -> Iterator[Runtime]:  # noqa: F811
    install(rt)
    yield rt
    worker_process_shutdown.disconnect(dispatch_uid=SIGNAL_UID)
    worker_shutdown.disconnect(dispatch_uid=SIGNAL_UID)


def test_an_exiting_pool_child_finishes_its_writes_first(hooked: Runtime) -> None:
    behind = hooked.behind
    assert behind is not None
    go, landed = threading.Event(), threading.Event()

    def write() -> None:
        go.wait(30)
        landed.set()

    # Given a write in flight (from another task thread)
    submitter = threading.Thread(target=behind.submit, args=(write,))
    submitter.start()
    submitter.join()

    # When Celery tells the pool child it exits, a moment before the write can land
    threading.Timer(0.2, go.set).start()
    worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)

    # Then the child waited for it
    assert landed.is_set()


def _take_only_message(r: redis.Redis) -> dict[str, Any]:
    [message] = _queued(r)
    for key in r.scan_iter("tdauto.*"):
        r.delete(key)
    return message


def test_a_worker_task_waits_for_its_last_write_and_what_a_write_sends_names_its_task(
    tmp_path: Path, redis_url: str
) -> None:
    """Through the action tasks a worker runs: the next action, sent by the writer thread,
    is the child of the task whose success it follows (Flower's task tree), and the task that
    runs it waits for that write first."""
    system = AutomationSystems(broker_url=redis_url, data_dir=tmp_path / "data", host="h1")
    r = redis.Redis.from_url(redis_url)
    runtime = system._rt
    behind = runtime.behind = WriteBehind()
    go = threading.Event()
    _behind_writes(runtime, lambda: go.wait(30))
    action = system.app.tasks["tdauto.action.cleanup"]
    try:
        task = asyncio.run(system.create_task(**_spec(actions=[CLEANUP, CLEANUP])))
        ex = system.trigger_sync(task.id)
        first = _take_only_message(r)

        # When a worker runs the first action's task, and its success is written behind
        assert action.apply(args=[ex.id, 0], task_id=first["headers"]["id"]).get() == "SUCCEEDED"
        assert _queued(r) == []  # not yet written, so the next action is not sent yet
        threading.Timer(0.2, go.set).start()

        # Then the same thread's next task, the second action's, waits for that write and runs
        assert action.apply(args=[ex.id, 1], task_id="t2").get() == "SUCCEEDED"
        behind.drain()  # its own success, written behind too
        done = system.get_execution_sync(ex.id)
        assert [a.status for a in done.actions] == [S.SUCCEEDED, S.SUCCEEDED]

        # And the message the writer sent for it names the first action's task as its parent
        sent = _take_only_message(r)
        assert json.loads(base64.b64decode(sent["body"]))[0] == [ex.id, 1]
        assert sent["headers"]["parent_id"] == first["headers"]["id"]
        assert sent["headers"]["root_id"] == first["headers"]["id"]
    finally:
        go.set()
        r.close()
        system.app.close()


@pytest.mark.parametrize(
    ("pool", "setting", "installed"),
    [
        ("cpu", "true", True),
        ("memory", "true", True),
        ("storage", "true", False),
        ("cpu", "false", False),
    ],
)
def test_tdauto_worker_writes_behind_only_in_a_prefork_pool_when_asked(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pool: str,
    setting: str,
    installed: bool,
) -> None:
    monkeypatch.setenv("TDAUTO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TDAUTO_WRITE_BEHIND", setting)
    systems: list[AutomationSystems] = []

    def system() -> AutomationSystems:
        systems.append(AutomationSystems())
        return systems[-1]

    started: list[list[str]] = []
    monkeypatch.setattr(cli_base, "system", system)
    monkeypatch.setattr(worker_hooks, "install", lambda *a, **k: None)
    monkeypatch.setattr(Celery, "worker_main", lambda app, argv: started.append(argv))
    try:
        result = CliRunner().invoke(cli.main, ["worker", pool])
        assert result.exit_code == 0, result.output
        [argv] = started
        assert (systems[0]._rt.behind is not None) is installed
        assert argv[argv.index("--pool") + 1] == ("threads" if pool == "storage" else "prefork")
    finally:
        worker_process_shutdown.disconnect(dispatch_uid=SIGNAL_UID)
        worker_shutdown.disconnect(dispatch_uid=SIGNAL_UID)
        for made in systems:
            made.app.close()

"""The scheduler's dispatch, driven with an injected clock and a recording sender."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from celery.beat import Service

from tdauto.actions.registry import REGISTRY, load_plugins
from tdauto.app import make_app, runtime_of
from tdauto.engine.executions import new_execution
from tdauto.engine.runner import run_action, start_execution
from tdauto.engine.runtime import Runtime
from tdauto.models import ExecutionStatus, Task, Trigger
from tdauto.scheduler import StoreScheduler, compute_next_ts, dispatch_due, install_stop_handler
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.support.engine import Recorder


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    load_plugins([])
    settings = Settings(data_dir=tmp_path / "data")
    return Runtime(settings, FileStore(settings.data_path), REGISTRY, Recorder())


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def add_daily(rt: Runtime, created: str) -> Task:
    task = Task.model_validate(
        {
            "name": "nightly",
            "type": "maintenance",
            "schedule": "daily",
            "schedule_config": {"hour": 2, "minute": 0},
            "actions": [{"type": "cleanup", "params": {"older_than": "30days", "dry_run": True}}],
            "created_at": datetime.fromisoformat(created).replace(tzinfo=UTC),
        },
        context=rt.validation_context(),
    )
    rt.store.create_task(task, compute_next_ts(task, ts(created), "UTC"))
    return task


def test_no_fire_before_slot_and_one_fire_at_slot(rt: Runtime) -> None:
    task = add_daily(rt, "2026-11-26T10:00:00")
    assert dispatch_due(rt, ts("2026-11-27T01:59:59")) == 0
    assert dispatch_due(rt, ts("2026-11-27T02:00:00")) == 1
    assert dispatch_due(rt, ts("2026-11-27T02:00:01")) == 0
    stored = rt.store.get_task(task.id)
    assert stored is not None and stored.next_run_at == datetime(2026, 11, 28, 2, tzinfo=UTC)
    (ex,) = rt.store.list_executions(task.id)
    assert ex.trigger.value == "schedule"
    assert ex.scheduled_for == datetime(2026, 11, 27, 2, tzinfo=UTC)


def test_two_beats_at_once_fire_a_slot_once(rt: Runtime) -> None:
    task = add_daily(rt, "2026-11-26T10:00:00")
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(dispatch_due(rt, ts("2026-11-27T02:00:00"))))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 1
    assert len(rt.store.list_executions(task.id)) == 1


def test_restart_between_claim_and_reschedule_resends_only_pending(rt: Runtime) -> None:
    task = add_daily(rt, "2026-11-26T10:00:00")
    assert dispatch_due(rt, ts("2026-11-27T02:00:00")) == 1
    # a beat died before moving the next fire time: the old slot is due again
    rt.store.set_next_run(task.id, ts("2026-11-27T02:00:00"))
    sent_before = len(rt.send.sent)  # type: ignore[attr-defined]
    assert dispatch_due(rt, ts("2026-11-27T02:00:05")) == 0
    # it was still PENDING, so it is re-sent (harmless: tdauto.run is idempotent)
    assert len(rt.send.sent) == sent_before + 1  # type: ignore[attr-defined]
    (ex,) = rt.store.list_executions(task.id)
    assert start_execution(rt, ex.id) is True
    assert start_execution(rt, ex.id) is False


def test_a_claimed_slot_left_unsent_runs_even_when_found_late(rt: Runtime) -> None:
    """A beat died between claiming a slot and sending it; the next beat comes an hour
    later, past the misfire grace, under ``misfire: skip``: the slot was claimed in time,
    so it is sent, not left PENDING (nor recorded MISSED over its claim)."""
    task = add_daily(rt, "2026-11-26T10:00:00")
    rt.store.save_task(task.model_copy(update={"misfire": "skip"}))
    slot = ts("2026-11-27T02:00:00")
    claimed = new_execution(task, rt.registry, Trigger.SCHEDULE, fire_ts=slot)
    assert rt.store.create_execution(claimed)  # and then the beat died: nothing sent
    assert dispatch_due(rt, slot + 3600) == 0
    assert rt.send.sent == [("tdauto.run", [claimed.id], "tdauto.control")]  # type: ignore[attr-defined]
    (ex,) = rt.store.list_executions(task.id)
    assert ex.status is ExecutionStatus.PENDING and start_execution(rt, ex.id) is True


def test_missed_slots_fire_once_and_next_is_from_now(rt: Runtime) -> None:
    task = add_daily(rt, "2026-11-20T10:00:00")
    # beat was down for days
    assert dispatch_due(rt, ts("2026-11-26T12:00:00")) == 1
    stored = rt.store.get_task(task.id)
    assert stored is not None and stored.next_run_at == datetime(2026, 11, 27, 2, tzinfo=UTC)


def test_run_chain_records_each_action(rt: Runtime, tmp_path: Path) -> None:
    task = add_daily(rt, "2026-11-26T10:00:00")
    dispatch_due(rt, ts("2026-11-27T02:00:00"))
    (ex,) = rt.store.list_executions(task.id)
    start_execution(rt, ex.id)
    name, args, queue = rt.send.sent[-1]  # type: ignore[attr-defined]
    assert (name, queue) == ("tdauto.action.cleanup", "tdauto.storage")
    assert run_action(rt, *args) is ExecutionStatus.SUCCEEDED
    done = rt.store.get_execution(ex.id)
    assert done is not None and done.status is ExecutionStatus.SUCCEEDED
    assert done.actions[0].attempts == 1 and done.actions[0].output is not None
    # a redelivered message of the finished action does nothing
    assert run_action(rt, *args) is None
    assert rt.store.get_execution(ex.id).actions[0].attempts == 1  # type: ignore[union-attr]


def _beat_with_two_due_slots(
    tmp_path: Path, signals_at_first_send: int
) -> tuple[Runtime, Service, list[str]]:
    """A beat service over a store with two tasks due now, whose first ``tdauto.run`` send
    delivers ``signals_at_first_send`` SIGTERMs to this process (a rolling restart landing
    in the middle of a dispatch); returns what it sent, as it sends."""
    app = make_app(Settings(data_dir=tmp_path / "data"))
    app.conf.beat_schedule = {}
    rt = runtime_of(app)
    for name in ("first", "second"):
        task = Task.model_validate(
            {
                "name": name,
                "type": "maintenance",
                "schedule": "interval",
                "schedule_config": {"every": 3600},
                "actions": [{"type": "cleanup", "params": {"older_than": "30d", "dry_run": True}}],
            },
            context=rt.validation_context(),
        )
        rt.store.create_task(task, time.time() - 1)
    sent: list[str] = []

    def send(name: str, args: list[Any], queue: str, priority: int = 5, **_: Any) -> None:
        sent.append(args[0])
        if len(sent) == 1:
            for _ in range(signals_at_first_send):
                os.kill(os.getpid(), signal.SIGTERM)  # delivered before this send returns

    rt.send = send
    return rt, Service(app, scheduler_cls=StoreScheduler, max_interval=1), sent


def _run_with_stop_handler(service: Service) -> bool:
    """``service.start()`` under ``install_stop_handler``; True when it stopped by itself
    (within 30 s; a broken stop would otherwise loop until the test times out)."""
    rescued = threading.Event()

    def rescue_stop() -> None:
        rescued.set()
        service.stop()

    rescue = threading.Timer(30.0, rescue_stop)
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        install_stop_handler(service)
        rescue.start()
        service.start()  # returns once stopped
    finally:
        rescue.cancel()
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
    return not rescued.is_set()


def test_sigterm_in_the_middle_of_a_dispatch_lets_the_tick_end_then_stops(tmp_path: Path) -> None:
    """A rolling restart's SIGTERM lands while a tick fires two due slots: both are sent
    (Celery's own handler exits after the first, leaving the second claimed and unsent), and
    the beat stops after that tick, its leader lock released."""
    rt, service, sent = _beat_with_two_due_slots(tmp_path, signals_at_first_send=1)
    assert _run_with_stop_handler(service)
    runs = rt.store.list_executions(limit=None)
    assert len(runs) == 2 and sorted(sent) == sorted(e.id for e in runs)
    assert service.scheduler.leader_lock.holder() is None


def test_a_second_sigterm_stops_the_beat_at_once_and_the_next_beat_sends_what_it_left(
    tmp_path: Path,
) -> None:
    """An operator who signals twice (a second Ctrl-C) stops the beat at once, in the middle
    of the tick. The next beat's tick then re-sends the slot claimed but not moved on and fires
    the other one: both run, and no slot is claimed twice."""
    rt, service, sent = _beat_with_two_due_slots(tmp_path, signals_at_first_send=2)
    assert _run_with_stop_handler(service)
    assert len(sent) == 1  # it stopped without going on to the second slot
    assert service.scheduler.leader_lock.holder() is None

    resent: list[str] = []
    rt.send = lambda name, args, queue, priority=5, **_: resent.append(args[0])
    Service(service.app, scheduler_cls=StoreScheduler, max_interval=1).scheduler.tick()
    runs = rt.store.list_executions(limit=None)
    assert len(runs) == 2 and sorted(resent) == sorted(e.id for e in runs)
    assert sent[0] in resent

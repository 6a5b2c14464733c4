"""Admission by reservation: fit here, pass on to a host with room, or wait (with ageing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tdauto.actions.registry import REGISTRY, load_plugins
from tdauto.engine.executions import new_execution
from tdauto.engine.runner import run_action, start_execution
from tdauto.engine.runtime import Runtime
from tdauto.models import Execution, ExecutionStatus, Task, Trigger
from tdauto.resources.ledger import (
    CAPACITY,
    Admission,
    admit_action,
    release,
    release_dead,
    reservation_key,
    wake_waiters,
)
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.unit.test_dispatch import Recorder

S = ExecutionStatus


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    load_plugins([])
    settings = Settings(data_dir=tmp_path / "data", host="here")
    return Runtime(settings, FileStore(settings.data_path), REGISTRY, Recorder())


def queued(rt: Runtime, cpu: float, priority: int = 5, name: str = "t") -> Execution:
    data: dict[str, Any] = {
        "name": name,
        "type": "maintenance",
        "schedule": "daily",
        "schedule_config": {"hour": 2},
        "actions": [{"type": "cleanup", "params": {"older_than": "1d", "dry_run": True}}],
        "resources": {"cpu": cpu},
        "overlap": "allow",
        "priority": priority,
    }
    task = Task.model_validate(data, context=rt.validation_context())
    if rt.store.get_task_by_name(name) is None:
        rt.store.create_task(task, None)
    else:
        task = rt.store.get_task_by_name(name)  # type: ignore[assignment]
    ex = new_execution(task, rt.registry, Trigger.MANUAL)
    rt.store.create_execution(ex)
    start_execution(rt, ex.id)
    got = rt.store.get_execution(ex.id)
    assert got is not None
    return got


def test_tasks_that_reserve_nothing_are_not_admitted(rt: Runtime) -> None:
    ex = queued(rt, 0)
    assert admit_action(rt, ex, 0) is Admission.NOT_NEEDED


def test_sixty_percent_fits_once_per_host_then_moves_then_waits(rt: Runtime) -> None:
    first, second, third = queued(rt, 60), queued(rt, 60), queued(rt, 60)
    assert admit_action(rt, first, 0) is Admission.RESERVED
    rt.store.put_sample("there", "storage", {"cpu_percent": 5.0}, ttl_s=60)
    assert admit_action(rt, second, 0) is Admission.MOVED
    assert rt.send.sent[-1][2] == "tdauto.storage.there"  # type: ignore[attr-defined]
    rt.store.reserve("there", "someone-else", {"cpu": 60})
    assert admit_action(rt, third, 0) is Admission.WAITING
    waiting = rt.store.get_execution(third.id)
    assert waiting is not None and waiting.actions[0].status is S.WAITING
    # when the first gives its room back, the waiter is sent again
    release(rt, first.id, 0)
    assert rt.store.get_execution(third.id).actions[0].status is S.QUEUED  # type: ignore[union-attr]
    assert rt.store.timer_due(CAPACITY, float("inf")) == []


def test_a_whole_run_releases_its_reservation(rt: Runtime) -> None:
    ex = queued(rt, 60)
    assert run_action(rt, ex.id, 0) is S.SUCCEEDED
    assert rt.store.reservations() == {}


def test_priority_goes_first_but_waiting_ages(rt: Runtime) -> None:
    rt.store.reserve("here", "hog", {"cpu": 100})
    low = queued(rt, 50, priority=0, name="low")
    high = queued(rt, 50, priority=9, name="high")
    admit_action(rt, low, 0)
    admit_action(rt, high, 0)
    (first, _), (second, _) = rt.store.timer_due(CAPACITY, float("inf"))
    assert (first, second) == (reservation_key(high.id, 0), reservation_key(low.id, 0))
    # a low-priority waiter that has waited long enough goes before a fresh urgent one
    rt.store.timer_set(CAPACITY, reservation_key(low.id, 0), 0.0)
    assert rt.store.timer_due(CAPACITY, float("inf"))[0][0] == reservation_key(low.id, 0)
    assert wake_waiters(rt, 1) == 1


def test_reservations_of_a_vanished_host_are_released(rt: Runtime) -> None:
    ex = queued(rt, 60)
    rt.store.reserve("gone", reservation_key(ex.id, 0), {"cpu": 60})
    rt.store.put_sample("alive", "cpu", {}, ttl_s=60)
    assert release_dead(rt) == 1
    assert rt.store.reservations() == {}

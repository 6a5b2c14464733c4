"""Bad input: each case raises an error naming the field, and nothing is stored."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tdauto import AutomationSystems, InvalidInput, NameTaken, ProcessType, ScheduleType


@pytest.fixture
def system(tmp_path: Path) -> AutomationSystems:
    return AutomationSystems(data_dir=tmp_path / "data")


def good(**changes: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "name": "Daily Backup",
        "type": ProcessType.MAINTENANCE,
        "schedule": ScheduleType.DAILY,
        "schedule_config": {"hour": 2, "minute": 0},
        "actions": [
            {"type": "backup", "params": {"target": "database", "retention": "7days"}},
            {"type": "cleanup", "params": {"older_than": "30days"}},
        ],
        "resources": {"cpu": 20.0, "memory": 30.0, "storage": 50.0},
    }
    task.update(changes)
    return task


CASES = [
    ("hour 24", good(schedule_config={"hour": 24, "minute": 0}), "hour"),
    ("minute -1", good(schedule_config={"hour": 2, "minute": -1}), "minute"),
    ("unknown key", good(schedule_config={"hour": 2, "minuet": 0}), "minuet"),
    ("key of another type", good(schedule_config={"hour": 2, "day": 3}), "day"),
    ("unknown action", good(actions=[{"type": "bakup", "params": {}}]), "bakup"),
    (
        "params that do not fit",
        good(actions=[{"type": "cleanup", "params": {"older_than": "abc"}}]),
        "older_than",
    ),
    ("resource over 100", good(resources={"cpu": 120.0}), "cpu"),
    ("resource below 0", good(resources={"memory": -1.0}), "memory"),
    ("unknown resource", good(resources={"gpu": 10.0}), "gpu"),
    ("empty name", good(name=""), "name"),
    ("blank name", good(name="   "), "name"),
    ("no actions", good(actions=[]), "actions"),
    (
        "path outside allowed paths",
        good(actions=[{"type": "cleanup", "params": {"older_than": "1d", "path": "/etc"}}]),
        "path",
    ),
    ("unknown option", good(colour="blue"), "colour"),
]


@pytest.mark.parametrize(("case", "data", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_names_the_field_and_stores_nothing(
    system: AutomationSystems, case: str, data: dict[str, Any], field: str
) -> None:
    # Given an empty store, When a bad task is created
    with pytest.raises((ValidationError, ValueError)) as info:
        asyncio.run(system.create_task(**data))
    # Then the error names the field, and nothing was stored
    assert field in str(info.value), str(info.value)
    assert system.store.list_tasks() == []
    assert system.store.next_due_ts() is None


def test_same_definition_twice_returns_existing(system: AutomationSystems) -> None:
    first = asyncio.run(system.create_task(**good()))
    second = asyncio.run(system.create_task(**good()))
    assert second.id == first.id
    assert len(system.store.list_tasks()) == 1


def test_taken_name_with_other_definition_says_use_task_update(system: AutomationSystems) -> None:
    first = asyncio.run(system.create_task(**good()))
    with pytest.raises(NameTaken) as info:
        asyncio.run(system.create_task(**good(schedule_config={"hour": 3, "minute": 0})))
    assert "`tdauto task update 'Daily Backup' --set KEY=VALUE`" in str(info.value)
    assert info.value.task_id == first.id  # a program updates it by id
    kept = system.store.get_task(first.id)
    assert kept is not None and kept.schedule_config.hour == 2


def test_bad_update_keeps_the_stored_task(system: AutomationSystems) -> None:
    first = asyncio.run(system.create_task(**good()))
    with pytest.raises(InvalidInput, match=r"^schedule_config\.hour: Input should be less than"):
        asyncio.run(system.update_task(first.id, schedule_config={"hour": 25}))
    kept = system.store.get_task(first.id)
    assert kept is not None and kept.schedule_config.hour == 2
    assert kept.next_run_at == first.next_run_at


def test_update_reschedules(system: AutomationSystems) -> None:
    first = asyncio.run(system.create_task(**good()))
    updated = asyncio.run(system.update_task(first.id, schedule_config={"hour": 5, "minute": 30}))
    assert updated.next_run_at is not None
    assert (updated.next_run_at.hour, updated.next_run_at.minute) == (5, 30)


def test_pause_removes_from_due_index_and_resume_restores(system: AutomationSystems) -> None:
    task = asyncio.run(system.create_task(**good()))
    paused = asyncio.run(system.pause_task(task.id))
    assert not paused.enabled and paused.next_run_at is None
    assert system.store.next_due_ts() is None
    resumed = asyncio.run(system.resume_task("Daily Backup"))
    assert resumed.enabled and resumed.next_run_at == task.next_run_at

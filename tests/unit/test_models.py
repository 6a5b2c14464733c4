"""Models: enums, definitions, ids and redaction."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tdauto.models import (
    ExecutionStatus,
    ProcessType,
    ResourceClass,
    Resources,
    ScheduleConfig,
    ScheduleType,
    Task,
    slot_execution_id,
)
from tdauto.redact import REDACTED, redact, redact_text


def task(**changes: object) -> Task:
    data: dict[str, object] = {
        "name": "t",
        "type": "MAINTENANCE",
        "schedule": "Daily",
        "schedule_config": {"hour": 2},
        "actions": [{"type": "cleanup", "params": {"older_than": "30days"}}],
    }
    data.update(changes)
    return Task.model_validate(data)


def test_enums_accept_names_and_values_in_any_case() -> None:
    assert ProcessType("MAINTENANCE") is ProcessType.MAINTENANCE
    assert ScheduleType("daily") is ScheduleType("DAILY") is ScheduleType.DAILY
    assert ExecutionStatus("succeeded") is ExecutionStatus.SUCCEEDED
    with pytest.raises(ValueError):
        ProcessType("gardening")


def test_terminal_states() -> None:
    assert ExecutionStatus.MISSED.terminal and ExecutionStatus.SKIPPED.terminal
    assert not ExecutionStatus.RUNNING.terminal and not ExecutionStatus.WAITING.terminal


def test_definition_ignores_ids_times_and_run_state() -> None:
    a, b = task(), task()
    assert a.id != b.id
    assert a.definition() == b.definition()
    assert task(priority=9).definition() != a.definition()


def test_schedule_keys_checked_per_type() -> None:
    with pytest.raises(ValidationError, match="DAILY schedules need"):
        task(schedule_config={"minute": 5})
    with pytest.raises(ValidationError, match="do not apply to DAILY"):
        task(schedule_config={"hour": 2, "expression": "* * * * *"})
    assert task(schedule="cron", schedule_config={"expression": "*/5 * * * *"}).schedule_config


def test_day_of_week_follows_cron() -> None:
    assert ScheduleConfig(day_of_week=0).day_of_week == "sun"
    assert ScheduleConfig(day_of_week=7).day_of_week == "sun"
    assert ScheduleConfig(day_of_week="Monday").day_of_week == "mon"
    with pytest.raises(ValidationError, match="day_of_week"):
        ScheduleConfig(day_of_week=8)


def test_largest_resource_class() -> None:
    assert Resources(cpu=20, memory=30, storage=50).largest_class() is ResourceClass.STORAGE
    assert Resources().largest_class() is ResourceClass.CPU


def test_slot_ids_are_stable_and_distinct() -> None:
    assert slot_execution_id("a", 100.0) == slot_execution_id("a", 100.4)
    assert slot_execution_id("a", 100.0) != slot_execution_id("a", 101.0)
    assert slot_execution_id("a", 100.0) != slot_execution_id("b", 100.0)


def test_redaction_of_params_and_text() -> None:
    data = {"password": "hunter2", "nested": {"api_key": "abc"}, "path": "/x", "key": "k"}
    assert redact(data) == {
        "password": REDACTED,
        "nested": {"api_key": REDACTED},
        "path": "/x",
        "key": REDACTED,
    }
    assert "hunter2" not in redact_text("connect redis://user:hunter2@host:6379/0")
    assert "hunter2" not in redact_text("login with password=hunter2 now")


def test_run_after_accepts_yaml_unquoted_on() -> None:
    import yaml

    from tdauto.policies import RunAfter

    data = yaml.safe_load("task: A\non: failure\n")
    assert True in data  # YAML 1.1 turned the key into a boolean
    assert RunAfter.model_validate(data).on == "failure"

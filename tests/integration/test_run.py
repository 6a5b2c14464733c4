"""A task triggered through the facade runs on real workers started through the CLI."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from tdauto import AutomationSystems, ExecutionStatus, ProcessType, ScheduleType
from tdauto.actions.maintenance import restore_backup
from tdauto.settings import Settings
from tdauto.store import open_store


def create(system: AutomationSystems, name: str, actions: list[dict]) -> str:
    task = asyncio.run(
        system.create_task(
            name=name,
            type=ProcessType.MAINTENANCE,
            schedule=ScheduleType.DAILY,
            schedule_config={"hour": 2, "minute": 0},
            actions=actions,
            resources={"cpu": 20.0, "memory": 30.0, "storage": 50.0},
        )
    )
    return task.id


def test_backup_and_cleanup_succeed_and_backup_restores(
    system: AutomationSystems,
    workers: list[subprocess.Popen[bytes]],
    data_dir: Path,
    tmp_path: Path,
) -> None:
    # Given the usage guide's task and an old file for cleanup to remove
    task_id = create(
        system,
        "Daily Backup",
        [
            {"type": "backup", "params": {"target": "database", "retention": "7days"}},
            {"type": "cleanup", "params": {"older_than": "30days"}},
        ],
    )
    # When it is triggered
    execution = system.trigger_sync(task_id)
    done = system.wait_sync(execution.id, timeout=90)
    # Then it succeeded with both actions recorded, each with its host and queue
    assert done.status is ExecutionStatus.SUCCEEDED, done.model_dump_json(indent=2)
    backup, cleanup = done.actions
    assert [backup.type, cleanup.type] == ["backup", "cleanup"]
    assert all(r.status is ExecutionStatus.SUCCEEDED and r.attempts == 1 for r in done.actions)
    assert backup.host == "itest" and backup.queue == "tdauto.storage"
    assert backup.output is not None and len(backup.output["sha256"]) == 64
    assert cleanup.output is not None and "bytes_freed" in cleanup.output
    assert system.store.read_log(execution.id)

    # And the backup restores the store to the same tasks
    restored = open_store(Settings(data_dir=tmp_path / "restored"))
    restore_backup(Path(backup.output["path"]), store=restored)
    assert [t.id for t in restored.list_tasks()] == [task_id]


def test_failing_action_marks_execution_failed_with_error(
    system: AutomationSystems, workers: list[subprocess.Popen[bytes]]
) -> None:
    task_id = create(
        system,
        "Breaks",
        [
            {"type": "fail", "params": {"message": "disk on fire"}},
            {"type": "cleanup", "params": {"older_than": "30days"}},
        ],
    )
    done = system.wait_sync(system.trigger_sync(task_id).id, timeout=90)
    assert done.status is ExecutionStatus.FAILED
    assert done.error is not None and "disk on fire" in done.error
    failed, skipped = done.actions
    assert failed.status is ExecutionStatus.FAILED and "disk on fire" in (failed.error or "")
    assert skipped.status is ExecutionStatus.SKIPPED and skipped.attempts == 0
    assert "about to fail" in system.store.read_log(done.id)

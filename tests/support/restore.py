"""Helpers of the restore tests: a store backup file, a data dir's bytes, and a second process
holding the data dir's lock the way ``tdauto up`` does."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import Result

from tdauto.models import ActionRun, Execution, ExecutionStatus, ProcessType, ScheduleType, Task
from tdauto.store import Store

S = ExecutionStatus
BASE = datetime(2024, 6, 1, tzinfo=UTC)

HOLD_LOCK = """
import sys, time
from pathlib import Path
from tdauto.uplock import UpLock
UpLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(600)
"""


def write_store_backup(folder: Path, snapshot: dict[str, Any], name: str = "database") -> Path:
    """``snapshot`` as the backup action writes it: gzipped JSON beside its ``.sha256``."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"{name}-20240601T000000Z-0123abcd.json.gz"
    archive.write_bytes(gzip.compress(json.dumps(snapshot).encode()))
    seal(archive)
    return archive


def seal(archive: Path) -> None:
    """(Re)write ``archive``'s checksum file so it matches its current bytes."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    archive.with_name(archive.name + ".sha256").write_text(f"{digest}  {archive.name}\n")


def tree_bytes(root: Path, but: Iterable[str] = ()) -> dict[str, bytes | None]:
    """Every path under ``root`` -> its bytes (None for a directory), except ``but``."""
    skip = set(but)
    return {
        name: (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
        if (name := p.relative_to(root).as_posix()) not in skip
    }


@contextlib.contextmanager
def lock_held_elsewhere(data_dir: Path) -> Iterator[int]:
    """Another live process holds ``data_dir``'s up lock while inside; yields its pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "held", f"lock holder failed to start (exit {proc.poll()})"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)


def make_task(name: str, **changes: Any) -> Task:
    fields: dict[str, Any] = {
        "name": name,
        "type": ProcessType.MAINTENANCE,
        "schedule": ScheduleType.DAILY,
        "schedule_config": {"hour": 2, "minute": 0},
        "actions": [
            {"type": "cleanup", "params": {"older_than": "30days"}},
            {"type": "cleanup", "params": {"older_than": "60days"}},
        ],
    }
    fields.update(changes)
    return Task(**fields)


def make_run(task: Task, n: int, status: S, actions: tuple[S, S]) -> Execution:
    return Execution(
        task_id=task.id,
        task_name=task.name,
        created_at=BASE + timedelta(seconds=n),
        status=status,
        actions=[ActionRun(index=i, type="cleanup", status=s) for i, s in enumerate(actions)],
    )


# status of the run -> statuses of its two actions, as the engine leaves them
IN_FLIGHT = {
    S.PENDING: (S.PENDING, S.PENDING),
    S.QUEUED: (S.QUEUED, S.PENDING),
    S.WAITING: (S.PENDING, S.PENDING),
    S.RUNNING: (S.RUNNING, S.PENDING),
    S.RETRYING: (S.RETRYING, S.PENDING),
}


def fill_busy(store: Store) -> tuple[Task, dict[S, Execution], Execution]:
    """A store as a running system leaves it: runs in every in-flight state, with their
    lease, timers, admission places and a reservation, plus one finished run."""
    task, _ = store.create_task(make_task("busy", lock="nightly"), 1_900_000_000.0)
    store.create_task(make_task("after", run_after={"task": "busy", "on": "success"}), None)
    runs: dict[S, Execution] = {}
    for n, (status, actions) in enumerate(IN_FLIGHT.items()):
        run = make_run(task, n, status, actions)
        if status is S.RUNNING:
            run.started_at = BASE + timedelta(minutes=9)
            run.actions[0].started_at = BASE + timedelta(minutes=10)  # its last sign of life
        store.create_execution(run)
        runs[status] = run
    running = runs[S.RUNNING]
    store.admit(running.id, task.id, 1, "nightly")
    store.timer_set("leases", f"{running.id}:0:1", 1.0)
    store.timer_set("deadlines", running.id, 2.0)
    store.timer_set("queue_timeouts", f"{runs[S.QUEUED].id}:0", 3.0)
    store.timer_set("retries", f"{runs[S.RETRYING].id}:0", 4.0)
    assert store.reserve("host-a", f"{running.id}:0", {"cpu": 50.0})
    done = make_run(task, 99, S.SUCCEEDED, (S.SUCCEEDED, S.SUCCEEDED))
    store.create_execution(done)
    return task, runs, done


def names(store: Store) -> list[str]:
    return sorted(t.name for t in store.list_tasks())


def one_error_line(result: Result) -> str:
    """The refusal: exit code 2, one line, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]

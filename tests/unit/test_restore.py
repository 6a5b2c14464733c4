"""``tdauto backup restore`` of a store backup: refused while in use, asked, into ``--dest``,
and in-flight runs ended, on both stores (docs/process-maintenance.md, Restore)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tdauto import cli
from tdauto.actions import store_restore
from tdauto.app import make_app
from tdauto.cli import backup as cli_backup
from tdauto.errors import StoreError
from tdauto.models import ExecutionStatus
from tdauto.processes import spawn_worker, stop_processes
from tdauto.settings import Settings
from tdauto.store import FileStore, RedisStore, Store
from tdauto.store.restored import RESTORED_REASON
from tdauto.uplock import UpLock
from tests.support.redis_server import RedisServer
from tests.support.restore import (
    BASE,
    IN_FLIGHT,
    fill_busy,
    lock_held_elsewhere,
    make_run,
    make_task,
    names,
    one_error_line,
    seal,
    tree_bytes,
    write_store_backup,
)

S = ExecutionStatus
LAST_SEEN = BASE + timedelta(minutes=10)
REPO = Path(__file__).resolve().parents[2]
TIMERS = ("leases", "retries", "deadlines", "queue_timeouts")


@pytest.fixture(params=["files", "redis"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "files":
        store: Store = FileStore(tmp_path / "data")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisStore(server.url, prefix="restore-test")
    yield store
    store.close()


def test_in_flight_runs_come_back_failed_with_nothing_left_holding_them(any_store: Store) -> None:
    # Given a store with runs in flight, their leases, timers, places and reservation
    task, runs, done = fill_busy(any_store)
    snapshot = any_store.snapshot()

    # When its own snapshot is restored into it
    any_store.restore(snapshot)

    # Then every run that was in flight is FAILED with the reason, its actions ended
    for status, before in runs.items():
        after = any_store.get_execution(before.id)
        assert after is not None
        assert (after.status, after.error) == (S.FAILED, RESTORED_REASON), status
        # ended at the last moment the record shows it alive, not at the restore
        assert after.finished_at == (LAST_SEEN if status is S.RUNNING else before.created_at)
        assert all(a.status.terminal for a in after.actions), (status, after.actions)
        first = after.actions[0]
        if before.actions[0].status is not S.PENDING:
            assert (first.status, first.error_kind) == (S.FAILED, "lost")
            assert first.error == RESTORED_REASON
            assert first.finished_at == after.finished_at
    assert any_store.get_execution(done.id) == done  # a finished run comes back as it was
    for status in IN_FLIGHT:
        assert any_store.list_executions(status=status, limit=None) == []
    assert len(any_store.list_executions(status=S.FAILED, limit=None)) == len(runs)

    # And no lease, timer, admission place or reservation of theirs survives
    for name in TIMERS:
        assert any_store.timer_due(name, float("inf")) == []
    assert any_store.reservations() == {}
    fresh = make_run(task, 200, S.PENDING, (S.PENDING, S.PENDING))
    assert any_store.admit(fresh.id, task.id, 1, "nightly") == []  # the place is free
    # And the run_after link comes back with the tasks
    after_task = any_store.get_task_by_name("after")
    assert after_task is not None and any_store.dependents("busy") == [after_task.id]


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def live(data: Path) -> FileStore:
    """The live store: one task and one finished run that a restore would replace."""
    store = FileStore(data)
    task, _ = store.create_task(make_task("live-task"), 1_900_000_000.0)
    store.create_execution(make_run(task, 0, S.SUCCEEDED, (S.SUCCEEDED, S.SUCCEEDED)))
    return store


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    """A store backup holding two tasks, one of them with a run that was RUNNING."""
    source = FileStore(tmp_path / "source")
    task, _ = source.create_task(make_task("from-backup"), 1_900_000_000.0)
    source.create_task(make_task("also-from-backup"), None)
    source.create_execution(make_run(task, 1, S.RUNNING, (S.RUNNING, S.PENDING)))
    return write_store_backup(tmp_path / "backups", source.snapshot())


Invoke = Callable[..., Result]


@pytest.fixture
def restore(data: Path) -> Invoke:
    def invoke(*args: str, input: str | None = None, **env: str | None) -> Result:
        runner = CliRunner()
        environ = {"TDAUTO_DATA_DIR": str(data), "TDAUTO_BROKER_URL": None, **env}
        return runner.invoke(cli.main, ["backup", "restore", *args], input=input, env=environ)

    return invoke


def test_refused_while_a_live_process_holds_the_data_dir_and_allowed_with_force(
    live: FileStore, backup: Path, data: Path, restore: Invoke
) -> None:
    with lock_held_elsewhere(data) as pid:
        before = tree_bytes(data)
        # When a restore runs while a live process holds the data dir's lock
        line = one_error_line(restore(str(backup), "--yes"))
        # Then it is refused, naming the holder and the fix, and nothing is written
        assert f"pid {pid}" in line and "stop tdauto up first" in line and "--force" in line
        assert tree_bytes(data) == before

        # When --force is given, Then it restores anyway
        forced = restore(str(backup), "--yes", "--force")
        assert forced.exit_code == 0, forced.output
        assert names(live) == ["also-from-backup", "from-backup"]
    # When the holder is gone (killed: its flock goes with it), Then no --force is needed
    assert restore(str(backup), "--yes").exit_code == 0


def test_dest_restores_elsewhere_and_leaves_the_live_store_byte_for_byte(
    live: FileStore, backup: Path, data: Path, tmp_path: Path, restore: Invoke
) -> None:
    before = tree_bytes(data)
    other = tmp_path / "other" / "data"

    result = restore(str(backup), "--dest", str(other), "--yes", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["restored_to"] == str(other)
    assert tree_bytes(data) == before
    copy = FileStore(other)
    assert names(copy) == ["also-from-backup", "from-backup"]
    [run] = copy.list_executions(limit=None)
    assert (run.status, run.error) == (S.FAILED, RESTORED_REASON)


def test_dest_is_checked_for_a_lock_too(
    live: FileStore, backup: Path, tmp_path: Path, restore: Invoke
) -> None:
    other = tmp_path / "other"
    FileStore(other)
    with lock_held_elsewhere(other) as pid:
        assert f"pid {pid}" in one_error_line(restore(str(backup), "--dest", str(other), "--yes"))
    # while the live data dir's lock does not stop a restore elsewhere
    with lock_held_elsewhere(live.root):
        assert restore(str(backup), "--dest", str(other), "--yes").exit_code == 0


def test_asks_first_and_an_answer_of_no_writes_nothing(
    live: FileStore,
    backup: Path,
    data: Path,
    restore: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli_backup, "stdin_is_interactive", lambda: True)
    before = tree_bytes(data)

    result = restore(str(backup), input="n\n")

    assert result.exit_code == 1
    assert f"over the store at {data}" in result.output
    assert "replacing its 1 tasks and 1 executions" in result.output
    assert "(2 tasks, 1 executions, 1 of them in flight" in result.output
    assert "nothing restored" in result.output
    assert tree_bytes(data) == before

    yes = restore(str(backup), input="y\n")
    assert yes.exit_code == 0, yes.output
    assert names(live) == ["also-from-backup", "from-backup"]


def test_an_up_that_starts_while_the_question_waits_is_still_refused(
    live: FileStore,
    backup: Path,
    data: Path,
    restore: Invoke,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli_backup, "stdin_is_interactive", lambda: True)
    lock = UpLock(data)

    def answer_yes_as_up_starts(*args: Any, **kwargs: Any) -> bool:
        lock.acquire()  # held in this process: another descriptor, so holder() sees it
        return True

    monkeypatch.setattr(cli_backup.click, "confirm", answer_yes_as_up_starts)
    before = tree_bytes(data)
    try:
        line = one_error_line(restore(str(backup)))
    finally:
        lock.release()
    assert f"pid {os.getpid()}" in line
    assert tree_bytes(data, but=["state/up.lock"]) == before


def test_non_interactive_without_yes_is_refused(
    live: FileStore, backup: Path, data: Path, restore: Invoke
) -> None:
    before = tree_bytes(data)
    # CliRunner's stdin is not a terminal
    assert "pass --yes" in one_error_line(restore(str(backup))).lower()
    assert tree_bytes(data) == before

    # and so is a real process's stdin from /dev/null
    env = {k: v for k, v in os.environ.items() if not k.startswith("TDAUTO_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tdauto.cli", "backup", "restore", str(backup)],
        env={**env, "TDAUTO_DATA_DIR": str(data), "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--yes" in proc.stderr and "Traceback" not in proc.stderr
    assert tree_bytes(data) == before


# --- bad input: one line naming the file and the fix, before anything is written --------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"plain bytes, not gzip", "not gzipped JSON"),
        (gzip.compress(b"not json at all"), "not gzipped JSON"),
        (gzip.compress(b'{"tasks": []}'), "not a tdauto store snapshot"),
        (
            gzip.compress(b'{"format": "tdauto-store-snapshot/2", "tasks": []}'),
            "restore it with that version",
        ),
        (
            gzip.compress(b'{"format": "tdauto-store-snapshot/1", "tasks": [{"name": "x"}]}'),
            "holds records this tdauto cannot read",
        ),
    ],
)
def test_a_file_that_is_not_a_snapshot_of_this_version_is_refused(
    live: FileStore, data: Path, tmp_path: Path, restore: Invoke, body: bytes, expected: str
) -> None:
    archive = tmp_path / "database-20240601T000000Z-0123abcd.json.gz"
    archive.write_bytes(body)
    seal(archive)
    before = tree_bytes(data)
    line = one_error_line(restore(str(archive), "--yes", "--force"))
    assert expected in line and str(archive) in line
    assert tree_bytes(data) == before


def test_a_checksum_mismatch_is_refused(
    live: FileStore, backup: Path, data: Path, restore: Invoke
) -> None:
    backup.write_bytes(backup.read_bytes() + b"x")
    before = tree_bytes(data)
    line = one_error_line(restore(str(backup), "--yes"))
    assert "sha256" in line and str(backup) in line and "another backup" in line
    assert tree_bytes(data) == before


def test_dest_that_is_someone_elses_folder_needs_overwrite(
    live: FileStore, backup: Path, data: Path, tmp_path: Path, restore: Invoke
) -> None:
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"meow")
    before, before_other = tree_bytes(data), tree_bytes(other)

    line = one_error_line(restore(str(backup), "--dest", str(other), "--yes"))

    assert str(other) in line and "--overwrite" in line
    assert (tree_bytes(data), tree_bytes(other)) == (before, before_other)
    ok = restore(str(backup), "--dest", str(other), "--yes", "--overwrite")
    assert ok.exit_code == 0, ok.output
    assert (other / "cat.jpg").read_bytes() == b"meow"
    assert names(FileStore(other)) == ["also-from-backup", "from-backup"]


# --- Redis mode -------------------------------------------------------------------------------


def test_redis_mode_refuses_while_workers_answer(tmp_path: Path, backup: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", broker_url="redis://127.0.0.1:1/0")
    plan = store_restore.StorePlan(
        archive=backup,
        sha256="0",
        snapshot={},
        target=store_restore.describe_target(settings, None),
        dest=None,
        tasks=0,
        executions=0,
        in_flight=0,
        live_tasks=0,
        live_executions=0,
    )
    replies = [{"cpu@h1": {"ok": "pong"}}, {"storage@h2": {"ok": "pong"}}]
    app: Any = SimpleNamespace(control=SimpleNamespace(ping=lambda timeout: replies))
    with pytest.raises(store_restore.StoreInUse) as caught:
        store_restore.check_not_in_use(plan, settings, app)
    message = str(caught.value)
    assert "workers cpu@h1, storage@h2" in message and "--force" in message
    assert "the Redis at redis://127.0.0.1:1/0 (prefix tdauto)" in message

    quiet: Any = SimpleNamespace(control=SimpleNamespace(ping=lambda timeout: []))
    store_restore.check_not_in_use(plan, settings, quiet)

    def unreachable(timeout: float) -> list[dict[str, Any]]:
        raise ConnectionError("Error 111 connecting to redis://:secret@127.0.0.1:1")

    down: Any = SimpleNamespace(control=SimpleNamespace(ping=unreachable))
    with pytest.raises(StoreError, match="cannot ask the workers") as failed:
        store_restore.check_not_in_use(plan, settings, down)
    assert "secret" not in str(failed.value) and "--force" in str(failed.value)


def test_redis_mode_refuses_while_a_real_worker_runs(
    redis_server: RedisServer, backup: Path, restore: Invoke, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "w", broker_url=redis_server.url, host="restore-host")
    worker = spawn_worker("storage", settings, tmp_path / "logs")
    try:
        app = make_app(settings)
        deadline = time.monotonic() + 60
        while "storage@restore-host" not in store_restore.live_workers(app):
            assert time.monotonic() < deadline and worker.poll() is None, "worker not up"
        line = one_error_line(restore(str(backup), "--yes", TDAUTO_BROKER_URL=redis_server.url))
        assert "workers storage@restore-host" in line and "prefix tdauto" in line
        assert "stop tdauto up and the workers first, or pass --force" in line
    finally:
        stop_processes([worker])
    untouched = RedisStore(redis_server.url)
    assert untouched.list_tasks() == []  # nothing was written
    untouched.close()


def test_redis_mode_restores_when_no_worker_answers_and_dest_leaves_redis_alone(
    redis_server: RedisServer, backup: Path, restore: Invoke, tmp_path: Path
) -> None:
    result = restore(str(backup), "--yes", TDAUTO_BROKER_URL=redis_server.url)
    assert result.exit_code == 0, result.output
    store = RedisStore(redis_server.url, prefix="tdauto")
    try:
        assert names(store) == ["also-from-backup", "from-backup"]
        [run] = store.list_executions(limit=None)
        assert (run.status, run.error) == (S.FAILED, RESTORED_REASON)

        # With --dest, a file store there gets it and the Redis keeps what it had
        store.delete_task(store.list_tasks()[0].id)
        before = store.snapshot()
        other = tmp_path / "copy"
        moved = restore(
            str(backup), "--yes", "--dest", str(other), TDAUTO_BROKER_URL=redis_server.url
        )
        assert moved.exit_code == 0, moved.output
        assert store.snapshot() == before
        assert names(FileStore(other)) == ["also-from-backup", "from-backup"]
    finally:
        store.close()

"""The ``backup`` and ``cleanup`` actions, called the way the engine calls them (no Celery).

Params go through the registry's model with the validation context (``registry`` and
``settings``), then the handler gets the parsed field values; outputs must be JSON.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sqlite3
import tarfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tdauto.actions import REGISTRY
from tdauto.actions.backup import prune
from tdauto.actions.maintenance import BackupParams, CleanupParams, restore_backup
from tdauto.actions.paths import open_dir
from tdauto.errors import ActionError, PathNotAllowed
from tdauto.models import Execution, Task
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.support import actions
from tests.support.actions import context, run

DAY_S = 86400


@pytest.fixture
def settings(tmp_path: Path, work: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir()
    return Settings(data_dir=data, allowed_paths=[data, work])


store = actions.store  # the fixture: a FileStore on the settings fixture's data path

make_ctx = partial(actions.make_ctx, task_name="nightly")


def tree(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (None for directories)."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def age(path: Path, seconds: float) -> None:
    """Set ``path``'s mtime ``seconds`` in the past."""
    then = time.time() - seconds
    os.utime(path, (then, then))


# --- backup of each kind ----------------------------------------------------------------------


def test_directory_backup_restores_identical_contents(settings, store, work, tmp_path):
    src = work / "site"
    (src / "static" / "img").mkdir(parents=True)
    (src / "index.html").write_text("<h1>hi</h1>")
    (src / "static" / "img" / "logo.bin").write_bytes(os.urandom(70_000))
    (src / "empty.txt").write_bytes(b"")
    (src / "emptydir").mkdir()

    out = run("backup", make_ctx(settings, store), {"kind": "directory", "path": str(src)})

    archive = Path(out["path"])
    assert out["target"] == "site" and out["kind"] == "directory"
    assert archive.parent == settings.data_path / "backups" / "site"
    assert archive.name.startswith("site-") and archive.name.endswith(".tar.gz")
    assert out["bytes"] == archive.stat().st_size
    assert out["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert (archive.parent / (archive.name + ".sha256")).read_text().split() == [
        out["sha256"],
        archive.name,
    ]
    result = restore_backup(archive, dest=tmp_path / "restored")
    assert result["sha256"] == out["sha256"]
    assert tree(tmp_path / "restored") == tree(src)


def test_directory_backup_skips_its_own_destination(settings, store):
    data = settings.data_path
    (data / "reports").mkdir(exist_ok=True)
    (data / "reports" / "r.json").write_text("{}")
    run("backup", make_ctx(settings, store), {"kind": "directory", "path": str(data)})
    second = run(
        "backup", make_ctx(settings, store, "exec-2"), {"kind": "directory", "path": str(data)}
    )
    with tarfile.open(second["path"]) as tar:
        names = tar.getnames()
    assert "reports/r.json" in names
    assert not any(n == "backups" or n.startswith("backups/") for n in names)


def test_sqlite_backup_of_a_database_being_written(settings, store, work, tmp_path):
    db = work / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT)")
        conn.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"v{i}") for i in range(100)])
    stop, writing = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        """Commit batches of 10 rows, each transaction held open for a moment."""
        conn = sqlite3.connect(db, timeout=10, isolation_level=None)
        n = 100
        try:
            while not stop.is_set():
                conn.execute("BEGIN IMMEDIATE")
                for _ in range(10):
                    conn.execute("INSERT INTO items VALUES (?, ?)", (n, f"v{n}"))
                    n += 1
                    time.sleep(0.001)
                conn.execute("COMMIT")
                writing.set()
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)
        finally:
            conn.close()

    # Given a writer committing batches of rows
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(10)
        # When the database is backed up while it is written
        out = run("backup", make_ctx(settings, store), {"kind": "sqlite", "path": str(db)})
    finally:
        stop.set()
        thread.join()
    assert not failures

    # Then the restored copy opens, is intact and holds whole committed batches only
    restored = tmp_path / "restored" / "app.db"
    restore_backup(Path(out["path"]), dest=restored)
    with sqlite3.connect(restored) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = copy.execute("SELECT id, value FROM items ORDER BY id").fetchall()
    assert len(rows) >= 110 and len(rows) % 10 == 0
    assert rows == [(i, f"v{i}") for i in range(len(rows))]
    with sqlite3.connect(db) as source:
        assert (
            source.execute(
                "SELECT id, value FROM items WHERE id < ? ORDER BY id", (len(rows),)
            ).fetchall()
            == rows
        )


def test_sqlite_restore_does_not_overwrite_without_asking(settings, store, work):
    db = work / "a.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    out = run("backup", make_ctx(settings, store), {"kind": "sqlite", "path": str(db)})
    with pytest.raises(ValueError, match="overwrite=True"):
        restore_backup(Path(out["path"]), dest=db)
    assert restore_backup(Path(out["path"]), dest=db, overwrite=True)["restored_to"] == str(db)


def _task(name: str) -> Task:
    return Task(
        name=name,
        type="maintenance",
        schedule="interval",
        schedule_config={"every": "1h"},
        actions=[{"type": "backup", "params": {"keep": 3}}],
    )


def test_store_backup_restores_into_a_fresh_store(settings, store, tmp_path):
    for name in ("alpha", "beta"):
        store.create_task(_task(name), time.time() + 3600)
    task = store.get_task_by_name("alpha")
    assert task is not None
    store.create_execution(Execution(task_id=task.id, task_name=task.name))

    out = run("backup", make_ctx(settings, store), {})  # target defaults to "database"

    assert out["target"] == "database" and out["kind"] == "store"
    assert out["path"].endswith(".json.gz")
    fresh = FileStore(tmp_path / "fresh")
    result = restore_backup(Path(out["path"]), store=fresh)
    assert (result["tasks"], result["executions"]) == (2, 1)
    dump = [t.model_dump() for t in store.list_tasks()]
    assert [t.model_dump() for t in fresh.list_tasks()] == dump
    assert [e.id for e in fresh.list_executions()] == [e.id for e in store.list_executions()]


# --- restore refuses what it cannot trust ------------------------------------------------------


def test_restore_refuses_a_checksum_mismatch(settings, store, work, tmp_path):
    (work / "src").mkdir()
    (work / "src" / "f").write_text("data")
    out = run("backup", make_ctx(settings, store), {"kind": "directory", "path": str(work / "src")})
    archive = Path(out["path"])
    archive.write_bytes(archive.read_bytes() + b"tampered")
    with pytest.raises(ActionError, match="sha256") as caught:
        restore_backup(archive, dest=tmp_path / "restored")
    assert caught.value.kind == "integrity"
    assert not (tmp_path / "restored").exists()

    Path(str(archive) + ".sha256").unlink()
    with pytest.raises(ActionError, match="no checksum file"):
        restore_backup(archive, dest=tmp_path / "restored")


def test_restore_refuses_members_escaping_the_destination(tmp_path):
    archive = tmp_path / "evil-20240101T000000Z-0123abcd.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    Path(str(archive) + ".sha256").write_text(f"{digest}  {archive.name}\n")
    with pytest.raises(ActionError, match="unsafe member"):
        restore_backup(archive, dest=tmp_path / "restored" / "here")
    assert not (tmp_path / "restored" / "escaped.txt").exists()


def test_restore_refuses_a_store_file_that_is_not_a_snapshot(tmp_path, store):
    archive = tmp_path / "x-20240101T000000Z-0123abcd.json.gz"
    archive.write_bytes(gzip.compress(b'{"format": "other"}'))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    Path(str(archive) + ".sha256").write_text(f"{digest}  {archive.name}\n")
    with pytest.raises(ActionError, match="not a tdauto store snapshot"):
        restore_backup(archive, store=store)


# --- retention and idempotency ------------------------------------------------------------------


def _backups(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.gz") if not p.name.startswith("."))


def test_keep_prunes_the_oldest_and_keeps_the_new_one(settings, store, work):
    (work / "src").mkdir()
    params = {"kind": "directory", "path": str(work / "src"), "target": "src"}
    old = [run("backup", make_ctx(settings, store, f"old-{i}"), params) for i in range(3)]
    for i, out in enumerate(old):  # old-0 is the oldest
        age(Path(out["path"]), (3 - i) * DAY_S)
    other = run(
        "backup",
        make_ctx(settings, store, "x"),
        {"kind": "directory", "path": str(work / "src"), "target": "other"},
    )
    age(Path(other["path"]), 30 * DAY_S)

    new = run("backup", make_ctx(settings, store, "new"), params | {"keep": 2})

    assert sorted(new["pruned"]) == sorted([old[0]["path"], old[1]["path"]])
    folder = settings.data_path / "backups" / "src"
    assert _backups(folder) == sorted([Path(old[2]["path"]), Path(new["path"])])
    assert not Path(old[0]["path"] + ".sha256").exists()
    assert Path(other["path"]).exists()  # another target's backups are not touched


def test_retention_prunes_by_age(settings, store, work):
    (work / "src").mkdir()
    params = {"kind": "directory", "path": str(work / "src"), "target": "src"}
    week_old = run("backup", make_ctx(settings, store, "a"), params)
    day_old = run("backup", make_ctx(settings, store, "b"), params)
    age(Path(week_old["path"]), 8 * DAY_S)
    age(Path(day_old["path"]), DAY_S)

    new = run("backup", make_ctx(settings, store, "c"), params | {"retention": "7days"})

    assert new["pruned"] == [week_old["path"]]
    assert Path(day_old["path"]).exists() and Path(new["path"]).exists()


def test_prune_never_removes_the_backup_just_written(settings, store, work):
    (work / "src").mkdir()
    out = run("backup", make_ctx(settings, store), {"kind": "directory", "path": str(work / "src")})
    newest = Path(out["path"])
    far_future = time.time() + 365 * DAY_S
    with open_dir(newest.parent, settings.confined_paths, "dest") as folder:
        assert prune(folder, "src", newest.name, 1.0, None, now_ts=far_future) == []
    assert newest.exists()


def test_a_redelivered_attempt_returns_the_first_backup(settings, store, work):
    (work / "src").mkdir()
    (work / "src" / "f").write_text("x")
    params = {"kind": "directory", "path": str(work / "src")}
    ctx = make_ctx(settings, store, "exec-9", index=2)
    folder = settings.data_path / "backups" / "src"
    folder.mkdir(parents=True)
    # Given an attempt that crashed half-way, leaving a temp file and an orphan sidecar
    suffix = hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:8]
    (folder / f".src-20240101T000000Z-{suffix}.tar.gz.0badf00d.tmp").write_bytes(b"partial")
    (folder / f"src-20240101T000000Z-{suffix}.tar.gz.sha256").write_text("0" * 64)

    # When the action is delivered again, twice of them at once, and then once more
    outputs: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda: outputs.append(run("backup", ctx, params)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    again = run("backup", ctx, params)

    # Then there is one backup, and every attempt reports it
    assert len(outputs) == 2
    assert len(_backups(folder)) == 1
    assert {o["path"] for o in [*outputs, again]} == {str(_backups(folder)[0])}
    assert sorted(o["reused"] for o in outputs) == [False, True] and again["reused"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [_backups(folder)[0].name, _backups(folder)[0].name + ".sha256"]
    )
    other_action = run("backup", make_ctx(settings, store, "exec-9", index=3), params)
    assert other_action["path"] != again["path"] and len(_backups(folder)) == 2


# --- validation at create time ------------------------------------------------------------------


def test_older_than_abc_is_refused_naming_the_field_and_the_forms(settings):
    with pytest.raises(ValidationError) as caught:
        CleanupParams.model_validate({"older_than": "abc"}, context=context(settings))
    text = str(caught.value)
    assert "older_than" in text and "7days" in text and "'abc'" in text


def test_paths_outside_the_allowed_paths_are_refused(settings, outside):
    with pytest.raises(ValidationError, match="outside the allowed paths") as caught:
        CleanupParams.model_validate(
            {"older_than": "1d", "path": [str(settings.data_path), str(outside)]},
            context=context(settings),
        )
    assert isinstance(caught.value.errors()[0]["ctx"]["error"], PathNotAllowed)
    assert caught.value.errors()[0]["loc"] == ("path",)
    with pytest.raises(ValidationError, match=r"dest: .*outside the allowed paths"):
        BackupParams.model_validate({"dest": str(outside)}, context=context(settings))
    with pytest.raises(ValidationError, match=r"path: .*outside the allowed paths"):
        BackupParams.model_validate(
            {"kind": "directory", "path": str(outside)}, context=context(settings)
        )
    # Without settings in the context the path check is skipped.
    CleanupParams.model_validate({"older_than": "1d", "path": str(outside)}, context={})


def test_unknown_target_is_refused_listing_the_known_ones(settings, work):
    match = r"target: unknown backup target 'nope'; known targets: database \(define it in"
    with pytest.raises(ValidationError, match=match):
        BackupParams.model_validate({"target": "nope"}, context=context(settings))
    # And through a task definition, as create_task validates it.
    with pytest.raises(ValidationError, match="unknown backup target"):
        Task.model_validate(
            {
                "name": "t",
                "type": "maintenance",
                "schedule": "daily",
                "schedule_config": {"hour": 2},
                "actions": [{"type": "backup", "params": {"target": "nope"}}],
            },
            context=context(settings),
        )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"retention": 5}, "keep: N"),
        ({"retention": "soon"}, "invalid duration"),
        ({"keep": 0}, "greater than or equal to 1"),
        ({"kind": "sqlite"}, "need a path"),
        ({"path": "x.db"}, "path given without kind"),
        ({"target": "../up"}, "not a valid name"),
        ({"bogus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_backup_params_are_refused(settings, params, message):
    with pytest.raises(ValidationError, match=message):
        BackupParams.model_validate(params, context=context(settings))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"older_than": "1d", "pattern": "logs/*.log"}, "without '/'"),
        ({"older_than": "1d", "path": []}, "leave path out"),
        ({"older_than": "-5m"}, "older_than"),
        ({}, "older_than"),
    ],
)
def test_bad_cleanup_params_are_refused(settings, params, message):
    with pytest.raises(ValidationError, match=message):
        CleanupParams.model_validate(params, context=context(settings))


def test_named_targets_come_from_the_targets_file(tmp_path, work, outside):
    db = work / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    targets = work / "targets.yaml"
    targets.write_text(
        f"app:\n  kind: sqlite\n  path: app.db\nlegacy:\n  kind: directory\n  path: {outside}\n"
    )
    data = tmp_path / "data"
    data.mkdir()
    settings = Settings(data_dir=data, allowed_paths=[data, work], backup_targets_file=targets)
    out = run("backup", make_ctx(settings, FileStore(data)), {"target": "app", "keep": 1})
    assert out["kind"] == "sqlite" and Path(out["path"]).parent.name == "app"
    with pytest.raises(ValidationError, match=r"target: target 'legacy'.*outside"):
        BackupParams.model_validate({"target": "legacy"}, context=context(settings))
    with pytest.raises(ValidationError, match="known targets: app, database, legacy"):
        BackupParams.model_validate({"target": "nope"}, context=context(settings))


# --- cleanup -------------------------------------------------------------------------------------


@pytest.fixture
def logs(work: Path) -> Path:
    """old.log (10 days, 100 B), new.log (fresh), old.txt (10 days), sub/old.log (10 days,
    50 B), keep-empty/ (already empty)."""
    root = work / "logs"
    (root / "sub").mkdir(parents=True)
    (root / "keep-empty").mkdir()
    for name, size, days in [
        ("old.log", 100, 10),
        ("new.log", 10, 0),
        ("old.txt", 7, 10),
        ("sub/old.log", 50, 10),
    ]:
        path = root / name
        path.write_bytes(b"x" * size)
        if days:
            age(path, days * DAY_S)
    return root


def test_cleanup_removes_only_old_files_matching_the_pattern(settings, store, logs):
    out = run(
        "cleanup",
        make_ctx(settings, store),
        {"older_than": "7days", "path": str(logs), "pattern": "*.log"},
    )
    assert sorted(out["removed"]) == [str(logs / "old.log"), str(logs / "sub" / "old.log")]
    assert (out["files"], out["bytes_freed"], out["dry_run"]) == (2, 150, False)
    assert out["errors"] == [] and out["dirs_removed"] == 1
    assert sorted(tree(logs)) == ["keep-empty", "new.log", "old.txt"]  # emptied sub/ went


def test_cleanup_dry_run_reports_and_removes_nothing(settings, store, logs):
    before = tree(logs)
    out = run(
        "cleanup",
        make_ctx(settings, store),
        {"older_than": "7days", "path": [str(logs)], "dry_run": True},
    )
    assert (out["files"], out["bytes_freed"], out["dry_run"]) == (3, 157, True)
    assert tree(logs) == before


def test_cleanup_not_recursive_stays_at_the_top(settings, store, logs):
    out = run(
        "cleanup",
        make_ctx(settings, store),
        {"older_than": "7days", "path": str(logs), "recursive": False},
    )
    assert out["files"] == 2 and (logs / "sub" / "old.log").exists()


def test_cleanup_defaults_to_the_data_folders(settings, store):
    logs = settings.data_path / "logs"
    old = logs / "e1.log"
    old.write_text("log")
    age(old, 40 * DAY_S)
    (settings.data_path / "metrics").mkdir(exist_ok=True)
    out = run("cleanup", make_ctx(settings, store), {"older_than": "30d"})
    assert out["removed"] == [str(old)] and logs.is_dir()


def test_cleanup_never_follows_a_symlink_out(settings, store, work, outside):
    secret = outside / "secret.log"
    secret.write_text("keep me")
    age(secret, 30 * DAY_S)
    age(outside, 30 * DAY_S)
    root = work / "logs"
    root.mkdir()
    (root / "to-dir").symlink_to(outside, target_is_directory=True)
    (root / "to-file.log").symlink_to(secret)

    out = run("cleanup", make_ctx(settings, store), {"older_than": "1d", "path": str(root)})

    assert out["files"] == 0
    assert secret.read_text() == "keep me"
    assert (root / "to-dir").is_symlink() and (root / "to-file.log").is_symlink()
    # A root that is itself a link out is refused at validation and at run time.
    link = work / "escape"
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValidationError, match="outside the allowed paths"):
        CleanupParams.model_validate(
            {"older_than": "1d", "path": str(link)}, context=context(settings)
        )
    handler = REGISTRY.get("cleanup").handler
    with pytest.raises(PathNotAllowed):
        handler(make_ctx(settings, store), older_than=DAY_S, path=[str(link)])
    assert secret.exists()

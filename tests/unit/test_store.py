"""One suite for the ``Store`` protocol, run against both backends (files and real Redis)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pytest
import redis

from tdauto.errors import InvalidInput, NameTaken, NotFound, StoreError
from tdauto.models import (
    ActionRun,
    Execution,
    ExecutionStatus,
    ProcessType,
    ScheduleType,
    Task,
)
from tdauto.settings import Settings
from tdauto.store import FileStore, RedisStore, Store, open_store
from tdauto.store.backend import RollupBucket, RollupDelta
from tdauto.store.effects import Effects
from tdauto.store.records import LOG_TRUNCATED_NOTE
from tests.support.redis_server import RedisServer

LOG_CAP = 1024
T0 = 1_718_000_000.0
BASE = datetime(2024, 6, 1, tzinfo=UTC)

StoreFactory = Callable[[str], Store]


def make_task(name: str = "t1", **changes: Any) -> Task:
    fields: dict[str, Any] = {
        "name": name,
        "type": ProcessType.MAINTENANCE,
        "schedule": ScheduleType.DAILY,
        "schedule_config": {"hour": 2, "minute": 0},
        "actions": [{"type": "cleanup", "params": {"older_than": "30days"}}],
    }
    fields.update(changes)
    return Task(**fields)


def make_execution(task: Task, n: int, **changes: Any) -> Execution:
    fields: dict[str, Any] = {
        "task_id": task.id,
        "task_name": task.name,
        "created_at": BASE + timedelta(seconds=n),
        "actions": [ActionRun(index=0, type="cleanup")],
    }
    fields.update(changes)
    return Execution(**fields)


@pytest.fixture(params=["files", "redis"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Makes empty stores of one kind: a data dir each, or a key prefix each on one server."""
    made: list[Store] = []
    server: RedisServer | None = None
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")

    def factory(name: str) -> Store:
        if server is None:
            store: Store = FileStore(tmp_path / name, log_max_bytes=LOG_CAP)
        else:
            store = RedisStore(server.url, prefix=f"test-{name}", log_max_bytes=LOG_CAP)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    return store_factory("main")


# --- tasks ------------------------------------------------------------------------------------


def test_create_task_then_get_by_id_and_by_name(store: Store) -> None:
    task, created = store.create_task(make_task(), T0)

    assert created
    by_id = store.get_task(task.id)
    by_name = store.get_task_by_name("t1")
    assert by_id is not None and by_name is not None
    assert by_id.definition() == by_name.definition() == make_task().definition()
    assert by_id.id == by_name.id == task.id
    assert by_id.next_run_at == task.next_run_at == datetime.fromtimestamp(T0, UTC)
    assert store.get_task("nope") is None
    assert store.get_task_by_name("nope") is None


def test_run_state_is_filled_in_on_read_and_kept_exact(store: Store) -> None:
    task, _ = store.create_task(make_task(), None)
    next_ts, last_ts = T0 + 0.123456, T0 - 0.987654

    store.set_next_run(task.id, next_ts)
    store.set_last_run(task.id, last_ts)

    read = store.get_task(task.id)
    assert read is not None and read.next_run_at is not None and read.last_run_at is not None
    assert read.next_run_at.timestamp() == next_ts
    assert read.last_run_at.timestamp() == last_ts
    [listed] = store.list_tasks()
    assert (listed.next_run_at, listed.last_run_at) == (read.next_run_at, read.last_run_at)
    assert store.due(next_ts) == [(task.id, next_ts)]


def test_create_task_records_run_after_in_the_same_step(store: Store) -> None:
    upstream, _ = store.create_task(make_task("A"), T0)
    before = store.snapshot()

    with pytest.raises(InvalidInput, match="no task named 'Z'") as error:
        store.create_task(make_task("b", run_after={"task": "Z"}), T0)

    assert error.value.field == "run_after.task"
    assert store.snapshot() == before and store.dependents("Z") == []
    b, created = store.create_task(make_task("b", run_after={"task": "A"}), T0)
    assert created and store.dependents("A") == [b.id]
    again, created = store.create_task(make_task("b", run_after={"task": "A"}), T0)
    assert not created and again.id == b.id and store.dependents("A") == [b.id]
    assert upstream.id not in store.dependents("A")


def test_acreate_task_is_create_task_awaited(store: Store) -> None:
    async def create(name: str, **changes: Any) -> tuple[Task, bool]:
        return await store.acreate_task(make_task(name, **changes), T0)

    first, created = asyncio.run(create("a"))
    assert created and store.get_task(first.id) is not None
    assert first.next_run_at == datetime.fromtimestamp(T0, UTC)
    again, created = asyncio.run(create("a"))  # another loop: the store still answers
    assert not created and again.id == first.id
    with pytest.raises(NameTaken):
        asyncio.run(create("a", priority=1))
    with pytest.raises(InvalidInput, match=r"run_after\.task"):
        asyncio.run(create("b", run_after={"task": "nope"}))
    assert store.due(T0) == [(first.id, T0)]


def test_redis_acreate_task_leaves_no_connection_behind_its_loops(
    redis_server: RedisServer,
) -> None:
    """Each loop's async client is closed when ``asyncio.run`` ends: loops come and go, the
    server's client count does not grow."""
    store = RedisStore(redis_server.url, prefix="loops")
    watcher = redis.Redis.from_url(redis_server.url)

    async def create(n: int) -> None:
        await asyncio.gather(*(store.acreate_task(make_task(f"t{n}-{i}"), T0) for i in range(8)))

    try:
        asyncio.run(create(0))
        baseline = len(watcher.client_list())
        for n in range(1, 6):
            asyncio.run(create(n))
        assert len(watcher.client_list()) == baseline
        assert len(store.list_tasks()) == 48
    finally:
        watcher.close()
        store.close()


def test_identical_recreate_returns_existing_and_writes_nothing(store: Store) -> None:
    first, _ = store.create_task(make_task(), T0)
    before = store.snapshot()

    again, created = store.create_task(make_task(), T0 + 999)

    assert not created
    assert again.id == first.id
    assert again.next_run_at == datetime.fromtimestamp(T0, UTC)
    assert store.snapshot() == before


def test_different_definition_with_same_name_raises_name_taken(store: Store) -> None:
    first, _ = store.create_task(make_task(), T0)
    before = store.snapshot()

    with pytest.raises(NameTaken) as raised:
        store.create_task(make_task(priority=1), T0)

    assert raised.value.task_id == first.id
    assert store.snapshot() == before


def test_save_task_renames_and_refuses_a_taken_name(store: Store) -> None:
    a, _ = store.create_task(make_task("a"), T0)
    b, _ = store.create_task(make_task("b"), T0 + 1)

    with pytest.raises(NameTaken):
        store.save_task(a.model_copy(update={"name": "b", "priority": 1}))

    assert [t.name for t in store.list_tasks()] == ["a", "b"]
    assert store.get_task_by_name("a").id == a.id  # type: ignore[union-attr]
    assert store.get_task_by_name("b").id == b.id  # type: ignore[union-attr]
    assert store.get_task(a.id).priority == 5  # type: ignore[union-attr]

    store.save_task(a.model_copy(update={"name": "c", "priority": 1}))

    renamed = store.get_task_by_name("c")
    assert renamed is not None and renamed.id == a.id and renamed.priority == 1
    assert renamed.next_run_at == datetime.fromtimestamp(T0, UTC)  # run state untouched
    assert store.get_task_by_name("a") is None
    with pytest.raises(NotFound):
        store.save_task(make_task("ghost"))


def test_create_task_with_a_taken_id_is_refused(store: Store) -> None:
    a, _ = store.create_task(make_task("a"), T0)

    with pytest.raises(InvalidInput):
        store.create_task(make_task("b", id=a.id), T0)

    assert [t.name for t in store.list_tasks()] == ["a"]


def test_delete_task_removes_it_and_its_due_entry(store: Store) -> None:
    task, _ = store.create_task(make_task(), T0)
    store.create_execution(make_execution(task, 1))

    assert store.delete_task(task.id)

    assert store.get_task(task.id) is None
    assert store.get_task_by_name("t1") is None
    assert store.due(T0 + 10) == []
    assert store.next_due_ts() is None
    assert not store.delete_task(task.id)
    assert len(store.list_executions(task_id=task.id)) == 1  # executions stay
    store.set_next_run(task.id, T0)  # a late reschedule does not bring it back
    assert store.due(T0 + 10) == []
    assert store.create_task(make_task(), T0)[1]  # the name is free again


# --- due index ----------------------------------------------------------------------------


def test_due_returns_only_due_tasks_earliest_first_within_limit(store: Store) -> None:
    late, _ = store.create_task(make_task("late"), T0 + 300)
    mid, _ = store.create_task(make_task("mid"), T0 + 200)
    early, _ = store.create_task(make_task("early"), T0 + 100)
    store.create_task(make_task("paused"), None)

    assert store.due(T0) == []
    assert store.due(T0 + 250) == [(early.id, T0 + 100), (mid.id, T0 + 200)]
    assert store.due(T0 + 300, limit=1) == [(early.id, T0 + 100)]
    assert store.due(T0 + 300, limit=0) == []
    assert [i for i, _ in store.due(T0 + 1000)] == [early.id, mid.id, late.id]
    assert store.next_due_ts() == T0 + 100


def test_next_due_ts_is_none_when_nothing_is_scheduled(store: Store) -> None:
    assert store.next_due_ts() is None
    store.create_task(make_task(), None)
    assert store.next_due_ts() is None


def test_set_next_run_none_removes_from_the_index(store: Store) -> None:
    a, _ = store.create_task(make_task("a"), T0)
    b, _ = store.create_task(make_task("b"), T0 + 50)

    store.set_next_run(a.id, None)

    assert store.due(T0 + 100) == [(b.id, T0 + 50)]
    assert store.get_task(a.id).next_run_at is None  # type: ignore[union-attr]
    store.set_next_run(a.id, T0 + 10)  # and back in, at the new time
    assert store.due(T0 + 100) == [(a.id, T0 + 10), (b.id, T0 + 50)]


# --- executions ---------------------------------------------------------------------------


def test_create_execution_twice_keeps_the_first(store: Store) -> None:
    task, _ = store.create_task(make_task(), T0)
    execution = make_execution(task, 1)

    assert store.create_execution(execution)
    assert not store.create_execution(execution.model_copy(update={"error": "second"}))

    assert store.get_execution(execution.id) == execution
    assert store.get_execution("nope") is None


def test_concurrent_updates_lose_nothing(store: Store) -> None:
    task, _ = store.create_task(make_task(), T0)
    execution = make_execution(task, 1)
    store.create_execution(execution)

    def bump(e: Execution) -> None:
        e.actions[0].attempts += 1

    def worker() -> None:
        for _ in range(20):
            store.update_execution(execution.id, bump)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert store.get_execution(execution.id).actions[0].attempts == 160  # type: ignore[union-attr]


def test_an_update_from_a_kept_copy_applies_to_the_current_record(
    store_factory: StoreFactory,
) -> None:
    here, there = store_factory("shared"), store_factory("shared")  # two processes
    task, _ = here.create_task(make_task(), T0)
    execution = make_execution(task, 1)
    here.create_execution(execution)
    mine = here.update_execution(execution.id, lambda e: setattr(e, "error", "mine"))

    def bump(e: Execution) -> None:
        e.actions[0].attempts += 1

    there.update_execution(execution.id, bump)  # the record changes elsewhere meanwhile
    done = here.update_execution(execution.id, lambda e: setattr(e, "lock", "db"), base=mine)

    assert (done.error, done.lock, done.actions[0].attempts) == ("mine", "db", 1)
    assert there.get_execution(execution.id) == done
    again = here.update_execution(execution.id, bump, base=mine)  # a used copy: parsed anew
    assert again.actions[0].attempts == 2 and again.lock == "db"


def test_update_execution_errors_write_nothing(store: Store) -> None:
    task, _ = store.create_task(make_task(), T0)
    execution = make_execution(task, 1)
    store.create_execution(execution)

    def boom(e: Execution) -> None:
        e.error = "half-way"
        raise RuntimeError("handler bug")

    with pytest.raises(RuntimeError, match="handler bug"):
        store.update_execution(execution.id, boom)
    with pytest.raises(InvalidInput):
        store.update_execution(execution.id, lambda e: setattr(e, "task_id", "other"))
    with pytest.raises(NotFound):
        store.update_execution("nope", lambda e: None)
    assert store.get_execution(execution.id) == execution


def test_update_writes_its_effects_with_the_record(store: Store) -> None:
    # Given an admitted execution with a lease, a waiting run and a dependent task
    task, _ = store.create_task(make_task(lock="db"), T0)
    execution = make_execution(task, 1, status=ExecutionStatus.RUNNING, lock="db")
    store.create_execution(execution)
    store.create_execution(make_execution(task, 2, status=ExecutionStatus.WAITING))
    assert store.admit(execution.id, task.id, 1, "db") == []
    store.timer_set("leases", "lease-1", T0)
    store.set_upstream("downstream", task.name)

    # When it ends, with its bookkeeping carried by the same update
    effects = Effects(
        set_timers=[("retries", "r-1", T0 + 5)],
        take_timers=[("leases", "lease-1")],
        release=(task.id, "db"),
        log="last line\n",
        count_waiting=True,
        dependents_of=task.name,
    )

    def end(e: Execution) -> Effects:
        e.status = ExecutionStatus.SUCCEEDED
        return effects

    store.update_execution(execution.id, end)

    # Then the record, timers, admission place and log all moved, and the read-backs came back
    assert store.get_execution(execution.id).status is ExecutionStatus.SUCCEEDED  # type: ignore[union-attr]
    assert store.timer_get("leases", "lease-1") is None
    assert store.timer_get("retries", "r-1") == T0 + 5
    assert store.admit("other", task.id, 1, "db") == []  # place and lock free again
    assert store.read_log(execution.id) == "last line\n"
    assert effects.dependents == ["downstream"]
    # Redis counts the WAITING runs in the same script, the file store from its index
    assert effects.waiting == 1
    assert [e.id for e in store.list_executions(status=ExecutionStatus.SUCCEEDED)] == [execution.id]


def waiting_seen(store: Store, execution_id: str) -> int | None:
    """The WAITING count an update of ``execution_id`` reads back (as a run's end asks it)."""
    effects = Effects(count_waiting=True)
    store.update_execution(execution_id, lambda e: effects)
    return effects.waiting


def to_status(status: ExecutionStatus) -> Callable[[Execution], None]:
    def mutate(e: Execution) -> None:
        e.status = status

    return mutate


def test_the_waiting_count_follows_runs_into_and_out_of_waiting(store: Store) -> None:
    # Given a running execution and a pending one
    task, _ = store.create_task(make_task(), T0)
    other = make_execution(task, 1, status=ExecutionStatus.RUNNING)
    first = make_execution(task, 2)
    for execution in (other, first):
        store.create_execution(execution)
    assert waiting_seen(store, other.id) == 0

    # When runs go WAITING (by an update, or created so) and leave it, the count follows
    store.update_execution(first.id, to_status(ExecutionStatus.WAITING))
    assert waiting_seen(store, other.id) == 1
    second = make_execution(task, 3, status=ExecutionStatus.WAITING)
    store.create_execution(second)
    assert waiting_seen(store, other.id) == 2
    store.update_execution(first.id, to_status(ExecutionStatus.QUEUED))
    assert waiting_seen(store, other.id) == 1
    store.update_execution(second.id, to_status(ExecutionStatus.CANCELLED))
    assert waiting_seen(store, other.id) == 0


def test_file_store_waiting_index_is_built_when_missing_and_drops_stale_ids(
    tmp_path: Path,
) -> None:
    # Given a data dir with a WAITING and a QUEUED run
    root = tmp_path / "data"
    store = FileStore(root)
    task, _ = store.create_task(make_task(), T0)
    waiting = make_execution(task, 1, status=ExecutionStatus.WAITING)
    queued = make_execution(task, 2, status=ExecutionStatus.QUEUED)
    for execution in (waiting, queued):
        store.create_execution(execution)
    index = root / "state" / "waiting.json"
    assert json.loads(index.read_text()) == [waiting.id]

    # When the index is missing (a data dir from before it): the count is unknown, never short,
    # until a store opens the data dir and builds it from the records
    index.unlink()
    assert waiting_seen(store, queued.id) is None
    assert waiting_seen(FileStore(root), queued.id) == 1
    assert json.loads(index.read_text()) == [waiting.id]

    # When it lists a run that does not wait (its process died between its two writes), the
    # count leaves it out and the index drops it
    index.write_text(json.dumps([waiting.id, queued.id]))
    assert waiting_seen(store, queued.id) == 1
    assert json.loads(index.read_text()) == [waiting.id]

    # And a restore rebuilds it from the restored records, where no run waits any more (a
    # restore ends every run that was in flight): the replaced store's entry is gone too
    restored = FileStore(tmp_path / "restored")
    replaced = tmp_path / "restored" / "state" / "waiting.json"
    replaced.write_text(json.dumps(["a-run-of-the-replaced-store"]))
    restored.restore(store.snapshot())
    assert json.loads(replaced.read_text()) == []
    assert restored.get_execution(waiting.id).status is ExecutionStatus.FAILED  # type: ignore[union-attr]


def test_effects_of_a_retried_update_are_written_once(redis_server: RedisServer) -> None:
    # A compare-and-set conflict (Redis only: the file store holds a lock instead) runs the
    # mutation again; its log must still be appended once.
    store, other = (RedisStore(redis_server.url, prefix="retry") for _ in range(2))
    task, _ = store.create_task(make_task(), T0)
    execution = make_execution(task, 1)
    store.create_execution(execution)
    calls = 0

    def bump(e: Execution) -> Effects:
        nonlocal calls
        calls += 1
        if calls == 1:  # a second writer changes the record between our read and our write
            other.update_execution(execution.id, lambda x: setattr(x, "error", "meanwhile"))
        e.actions[0].attempts += 1
        return Effects(log="once\n", rollup=RollupDelta([RollupBucket("all", "all")], {"n": 1}))

    store.update_execution(execution.id, bump)

    stored = store.get_execution(execution.id)
    assert calls == 2
    assert stored is not None and stored.error == "meanwhile" and stored.actions[0].attempts == 1
    assert store.read_log(execution.id) == "once\n"
    assert store.read_rollups(["all"]) == [{"n": 1.0}]  # the losing write counted nothing
    store.close()
    other.close()


def test_list_executions_filters_newest_first_with_limit(store: Store) -> None:
    a, _ = store.create_task(make_task("a"), T0)
    b, _ = store.create_task(make_task("b"), T0)
    made = [
        make_execution(a, 1, status=ExecutionStatus.SUCCEEDED),
        make_execution(b, 2, status=ExecutionStatus.FAILED),
        make_execution(a, 3, status=ExecutionStatus.FAILED),
        make_execution(a, 4, status=ExecutionStatus.RUNNING),
        make_execution(b, 5, status=ExecutionStatus.RUNNING),
    ]
    for execution in made:
        store.create_execution(execution)

    def ids(found: list[Execution]) -> list[str]:
        return [e.id for e in found]

    assert ids(store.list_executions()) == ids(made[::-1])
    assert ids(store.list_executions(limit=2)) == ids([made[4], made[3]])
    assert ids(store.list_executions(limit=None)) == ids(made[::-1])
    assert ids(store.list_executions(task_id=a.id)) == ids([made[3], made[2], made[0]])
    assert ids(store.list_executions(status=ExecutionStatus.FAILED)) == ids([made[2], made[1]])
    assert ids(store.list_executions(task_id=a.id, status=ExecutionStatus.RUNNING)) == ids(
        [made[3]]
    )
    assert store.list_executions(task_id="nobody") == []

    store.update_execution(made[3].id, lambda e: setattr(e, "status", ExecutionStatus.FAILED))

    assert ids(store.list_executions(status=ExecutionStatus.FAILED)) == ids(
        [made[3], made[2], made[1]]
    )
    assert ids(store.list_executions(status=ExecutionStatus.RUNNING)) == ids([made[4]])


# --- logs ---------------------------------------------------------------------------------


def test_logs_append_and_read(store: Store) -> None:
    assert store.read_log("e1") == ""

    store.append_log("e1", "line 1\n")
    store.append_log("e1", "line 2 é\n")

    assert store.read_log("e1") == "line 1\nline 2 é\n"
    assert store.read_log("e2") == ""


def test_logs_keep_their_head_and_stop_at_the_cap(store: Store) -> None:
    for n in range(200):
        store.append_log("e1", f"line {n:03d} €€€\n")  # multi-byte chars across the cut

    log = store.read_log("e1")

    assert len(log.encode()) <= LOG_CAP
    assert log.startswith("line 000 €€€\nline 001")
    assert log.endswith(LOG_TRUNCATED_NOTE)
    assert log.count(LOG_TRUNCATED_NOTE) == 1
    assert "\ufffd" not in log  # no character was split
    store.append_log("e1", "more\n")
    assert store.read_log("e1") == log


# --- whole-store operations ---------------------------------------------------------------


def test_snapshot_restores_into_an_empty_store(store_factory: StoreFactory) -> None:
    source = store_factory("source")
    a, _ = source.create_task(make_task("a"), T0 + 0.5)
    b, _ = source.create_task(make_task("b", schedule_config={"hour": 3}), None)
    source.set_last_run(b.id, T0 - 60)
    for n in range(3):
        source.create_execution(make_execution(a, n, status=ExecutionStatus.SUCCEEDED))

    snapshot = source.snapshot()
    target = store_factory("target")
    target.create_task(make_task("to-be-replaced"), T0)
    target.restore(snapshot)

    assert target.list_tasks() == source.list_tasks()
    assert target.list_executions(limit=None) == source.list_executions(limit=None)
    assert target.list_executions(task_id=a.id, status=ExecutionStatus.SUCCEEDED, limit=None)
    assert target.due(T0 + 10) == [(a.id, T0 + 0.5)]
    assert target.get_task_by_name("to-be-replaced") is None
    assert target.snapshot() == snapshot


def test_restore_refuses_a_foreign_dict(store: Store) -> None:
    store.create_task(make_task(), T0)

    with pytest.raises(InvalidInput):
        store.restore({"format": "something-else", "tasks": []})

    assert len(store.list_tasks()) == 1


def test_ping(store: Store) -> None:
    store.ping()


def test_redis_errors_are_wrapped(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, log_max_bytes=LOG_CAP, reconnect_s=0)
    store.ping()
    redis_server.kill()

    with pytest.raises(StoreError):
        store.ping()
    with pytest.raises(StoreError):
        store.get_task("x")
    store.close()


def test_open_store_picks_the_backend_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TDAUTO_BROKER_URL", raising=False)
    local = open_store(Settings(data_dir=tmp_path / "d"))
    distributed = open_store(Settings(data_dir=tmp_path / "d", broker_url="redis://h:1/0"))

    assert isinstance(local, FileStore)
    assert (tmp_path / "d" / "state").is_dir() and (tmp_path / "d" / "backups").is_dir()
    assert isinstance(distributed, RedisStore)  # no connection is made until first use


# --- the file store across processes ------------------------------------------------------


def _create_from_process(data_dir: str, worker: int, rounds: int) -> tuple[int, int, int]:
    """Create distinct, identical and conflicting tasks; count (created, existing, taken)."""
    store = FileStore(Path(data_dir), log_max_bytes=LOG_CAP)
    created = existing = taken = 0
    for n in range(rounds):
        store.create_task(make_task(f"own-{worker}-{n}"), T0 + n)
        _, new = store.create_task(make_task(f"same-{n}"), T0 + n)
        created, existing = created + new, existing + (not new)
        try:
            store.create_task(make_task(f"race-{n}", description=f"worker {worker}"), T0)
        except NameTaken:
            taken += 1
    return created, existing, taken


def test_file_store_from_several_processes_loses_no_task(tmp_path: Path) -> None:
    workers, rounds = 4, 15
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(_create_from_process, str(tmp_path), w, rounds) for w in range(workers)
        ]
        results = [f.result(timeout=120) for f in futures]

    store = FileStore(tmp_path)
    names = [t.name for t in store.list_tasks()]
    assert len(names) == len(set(names)) == workers * rounds + 2 * rounds
    assert sum(r[0] for r in results) == rounds  # one creator per identical name
    assert sum(r[1] for r in results) == (workers - 1) * rounds
    assert sum(r[2] for r in results) == (workers - 1) * rounds  # one winner per race
    assert len(store.due(T0 + rounds)) == len(names)


# --- admission --------------------------------------------------------------------------------


def test_admit_respects_max_concurrent_and_is_idempotent(store: Store) -> None:
    assert store.admit("e1", "t", 1, None) == []
    assert store.admit("e1", "t", 1, None) == []  # again: still admitted, nothing added
    assert store.admit("e2", "t", 1, None) == ["e1"]
    assert store.admit("e2", "t", 2, None) == []
    assert store.admit("x", "other", 1, None) == []  # other tasks have their own limit
    store.release("e1", "t", None)
    store.release("e1", "t", None)  # idempotent
    assert store.admit("e3", "t", 2, None) == []
    assert store.admit("e4", "t", None, None) == []  # no limit


def test_conflict_lock_is_held_across_tasks(store: Store) -> None:
    assert store.admit("a1", "a", None, "db") == []
    assert store.admit("b1", "b", None, "db") == ["a1"]
    assert store.admit("c1", "c", None, "other") == []
    store.release("a1", "a", "db")
    assert store.admit("b1", "b", None, "db") == []


def test_admit_from_many_threads_admits_exactly_the_limit(store: Store) -> None:
    admitted: list[str] = []
    lock = threading.Lock()

    def attempt(n: int) -> None:
        if store.admit(f"e{n}", "t", 3, None) == []:
            with lock:
                admitted.append(f"e{n}")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 3
    assert sorted(store.admit("late", "t", 3, None)) == sorted(admitted)


def test_create_admitted_writes_a_free_run_queued_and_a_blocked_one_pending(store: Store) -> None:
    S = ExecutionStatus
    task = make_task()

    def queue(e: Execution) -> None:
        e.status = S.QUEUED

    first, blockers = store.create_admitted(make_execution(task, 0), 1, "db", queue)
    assert blockers == [] and first.status is S.QUEUED
    second, blockers = store.create_admitted(make_execution(task, 1), 1, "db", queue)
    assert blockers == [first.id] and second.status is S.PENDING

    assert [e.id for e in store.list_executions(status=S.QUEUED)] == [first.id]
    assert [e.id for e in store.list_executions(status=S.PENDING)] == [second.id]
    assert store.admit("other", "another-task", None, "db") == [first.id]  # the lock is held
    assert store.admit(second.id, task.id, 2, None) == []  # the blocked one was not registered
    _, blockers = store.create_admitted(make_execution(task, 5, id=first.id), 9, None, queue)
    assert blockers is None  # the id exists: nothing written
    assert store.get_execution(first.id).status is S.QUEUED  # type: ignore[union-attr]


def test_file_store_admission_never_finds_a_place_without_its_record(tmp_path: Path) -> None:
    """The file store writes an admitted record once, under the lock every admission takes:
    a competitor that finds the place taken always finds its record too, so it never
    releases a live run's place as stale (``lifecycle.admit_live``) and gets in as well."""
    store = FileStore(tmp_path / "data")
    task, _ = store.create_task(make_task(), T0)
    stale: list[str] = []

    def trigger(k: int) -> None:
        for i in range(60):
            run = make_execution(task, 1000 * k + i)
            _, blockers = store.create_admitted(run, 1, None, lambda e: None)
            if blockers == []:
                store.release(run.id, task.id, None)  # it ran: the next one may start
            for blocker in blockers or []:
                if store.get_execution(blocker) is None:
                    stale.append(blocker)

    threads = [threading.Thread(target=trigger, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stale == []


# --- resources --------------------------------------------------------------------------------


def test_samples_expire(store: Store) -> None:
    store.put_sample("h1", "cpu", {"cpu_percent": 12.5}, ttl_s=30)
    store.put_sample("h2", "cpu", {"cpu_percent": 80.0}, ttl_s=0.2)
    import time

    time.sleep(0.4)
    live = store.samples()
    assert [(s["host"], s["pool"], s["cpu_percent"]) for s in live] == [("h1", "cpu", 12.5)]


def test_reservations_fit_within_capacity_and_release_once(store: Store) -> None:
    assert store.reserve("h1", "a", {"cpu": 60})
    assert store.reserve("h1", "a", {"cpu": 60})  # the same key again: already held
    assert not store.reserve("h1", "b", {"cpu": 60})  # 120% of the host's cpu
    assert store.reserve("h2", "b", {"cpu": 60})  # fits on another host
    assert store.reserve("h1", "c", {"cpu": 40, "memory": 90})
    assert set(store.reservations()) == {"a", "b", "c"}
    assert store.release_reservation("a")
    assert not store.release_reservation("a")
    assert store.reserve("h1", "d", {"cpu": 60})
    assert store.reservations()["d"] == {"host": "h1", "cpu": 60.0, "memory": 0.0, "storage": 0.0}


def test_concurrent_reservations_never_overbook(store: Store) -> None:
    won: list[str] = []
    lock = threading.Lock()

    def attempt(n: int) -> None:
        if store.reserve("h", f"k{n}", {"cpu": 30}):
            with lock:
                won.append(f"k{n}")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 3


def test_dependents_follow_their_upstream(store: Store) -> None:
    store.set_upstream("b", "A")
    store.set_upstream("c", "A")
    assert store.dependents("A") == ["b", "c"]
    store.set_upstream("c", "Z")  # moved to another upstream
    assert store.dependents("A") == ["b"] and store.dependents("Z") == ["c"]
    store.set_upstream("b", None)
    assert store.dependents("A") == []

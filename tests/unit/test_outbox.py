"""The outbox: an action's message is pushed by the script that writes the record marking it
sent, so a sent action always has its message and a refused run or a lost write sends none
(tdauto.engine.outbox)."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.transport import redis as kombu_redis

from tdauto import AutomationSystems
from tdauto.actions.registry import REGISTRY
from tdauto.app import broker_folder
from tdauto.engine import outbox
from tdauto.engine.executions import RECORD_HEADER, new_execution, requeue_action
from tdauto.engine.lifecycle import trigger_dependents
from tdauto.engine.runner import _final_failure, run_action, start_execution
from tdauto.engine.runtime import Runtime
from tdauto.engine.tasks import sender
from tdauto.localbroker import DB_NAME
from tdauto.models import Execution, ExecutionStatus, Trigger
from tdauto.scheduler import dispatch_due
from tdauto.settings import Settings
from tdauto.store import FileStore, RedisStore
from tdauto.store.backend import StaleDefinition
from tests.unit.test_dispatch import Recorder
from tests.unit.test_engine_races import _cleanup_task


def _queued(r: redis.Redis) -> list[dict[str, Any]]:
    """Every message waiting on tdauto's queues (any priority list), decoded (the store's
    keys are ``tdauto:...``)."""
    messages = []
    for key in r.scan_iter("tdauto.*"):
        if r.type(key) == b"list":
            messages += [json.loads(raw) for raw in r.lrange(key, 0, -1)]
    return messages


def _take_message(r: redis.Redis, execution_id: str, index: int) -> dict[str, Any]:
    """The one message waiting, taken off its queue: it must send action ``index`` of the
    execution and carry the execution's record exactly as stored (the worker claims from
    it)."""
    [message] = _queued(r)
    for key in r.scan_iter("tdauto.*"):
        r.delete(key)
    assert json.loads(base64.b64decode(message["body"]))[0] == [execution_id, index]
    stored = r.get(f"tdauto:execution:{execution_id}")
    assert stored is not None and message["headers"][RECORD_HEADER] == stored.decode()
    return message


def _take_start(r: redis.Redis) -> str:
    """The one message waiting, taken off its queue: a ``tdauto.run``; its execution id."""
    [message] = _queued(r)
    for key in r.scan_iter("tdauto.*"):
        r.delete(key)
    assert message["headers"]["task"] == "tdauto.run"
    [execution_id] = json.loads(base64.b64decode(message["body"]))[0]
    return str(execution_id)


def _forbid_unheld(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on a publish that kombu pushes itself (not held for the store) fails."""

    def unheld(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("published apart from its record")

    monkeypatch.setattr(kombu_redis.Channel, "_put", unheld)


Live = tuple[AutomationSystems, redis.Redis]


@pytest.fixture
def live(tmp_path: Path, redis_url: str) -> Iterator[Live]:
    """A system on a ``redis://`` broker (the outbox in use) and a client to look at Redis."""
    system = AutomationSystems(broker_url=redis_url, data_dir=tmp_path / "data", host="h1")
    r = redis.Redis.from_url(redis_url)
    try:
        yield system, r
    finally:
        r.close()
        system.app.close()


def test_a_trigger_pushes_its_message_in_the_step_that_writes_its_record(live: Live) -> None:
    system, r = live
    assert system._rt.hold is not None  # the outbox is in use on a redis:// broker
    task = asyncio.run(system.create_task(**_spec()))
    execution = system.trigger_sync(task.id)

    message = _take_message(r, execution.id, 0)
    assert message["headers"]["task"] == "tdauto.action.cleanup"
    assert system.get_execution_sync(execution.id).status is ExecutionStatus.QUEUED


def test_an_action_that_ends_pushes_the_next_one_with_the_record_that_marks_it_sent(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    system, r = live
    task = asyncio.run(system.create_task(**_spec(actions=[CLEANUP, CLEANUP])))
    execution = system.trigger_sync(task.id)
    first = _take_message(r, execution.id, 0)  # as a worker's BRPOP takes it

    # When a worker runs the first action (here, in this process)
    _forbid_unheld(monkeypatch)
    hint = first["headers"][RECORD_HEADER]
    status = run_action(system._rt, execution.id, 0, queue="tdauto.storage", hint=hint)

    # Then the second action's message went out with the record that marks it sent
    assert status is ExecutionStatus.SUCCEEDED
    _take_message(r, execution.id, 1)
    record = system.get_execution_sync(execution.id)
    S = ExecutionStatus
    assert [a.status for a in record.actions] == [S.SUCCEEDED, S.QUEUED]


def test_a_scheduled_start_and_a_requeue_push_their_message_with_their_record(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    system, r = live
    rt, store = system._rt, system._rt.store
    task = asyncio.run(system.create_task(**_spec()))
    _forbid_unheld(monkeypatch)
    # a scheduled run (the beat wrote it PENDING; tdauto.run starts it)
    run = new_execution(task, REGISTRY, Trigger.SCHEDULE)
    store.create_execution(run)
    assert start_execution(rt, run.id)
    _take_message(r, run.id, 0)

    # a retry that is due (the engine's retry timer re-queues it)
    def retrying(e: Execution) -> None:
        e.actions[0].status = ExecutionStatus.RETRYING

    store.update_execution(run.id, retrying)
    assert requeue_action(rt, run.id, 0, ExecutionStatus.RETRYING)
    _take_message(r, run.id, 0)
    record = store.get_execution(run.id)
    assert record is not None and record.actions[0].status is ExecutionStatus.QUEUED


def test_a_slot_claim_and_a_dependent_push_their_tdauto_run_with_their_record(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The beat's claim of a slot and a ``run_after`` dependent are written PENDING with
    their ``tdauto.run`` message in one step: no PENDING run without its message."""
    system, r = live
    rt, store = system._rt, system._rt.store
    upstream = asyncio.run(system.create_task(**_spec()))
    dependent = asyncio.run(system.create_task(**_spec(name="after", run_after={"task": "sweep"})))
    _forbid_unheld(monkeypatch)

    slot = time.time() - 1
    store.set_next_run(upstream.id, slot)
    assert dispatch_due(rt, slot + 0.5) == 1
    [claimed] = store.list_executions(task_id=upstream.id)
    assert _take_start(r) == claimed.id and claimed.status is ExecutionStatus.PENDING

    claimed.status = ExecutionStatus.SUCCEEDED
    assert trigger_dependents(rt, claimed) == 1
    [follower] = store.list_executions(task_id=dependent.id)
    assert _take_start(r) == follower.id and follower.status is ExecutionStatus.PENDING

    # the same end seen again (a redelivery) claims nothing, so it sends nothing either
    assert trigger_dependents(rt, claimed) == 0
    assert _queued(r) == [] and len(store.list_executions(task_id=dependent.id)) == 1


def test_a_failed_action_pushes_each_recovery_step_with_the_record_that_marks_it_sent(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    system, r = live
    rt, store = system._rt, system._rt.store
    task = asyncio.run(system.create_task(**_spec(on_failure=[CLEANUP, CLEANUP])))
    run = system.trigger_sync(task.id)
    _take_message(r, run.id, 0)
    _forbid_unheld(monkeypatch)

    for failing, step in ((0, 1), (1, 2)):  # the action, then the first recovery step
        _final_failure(rt, run.id, failing, ExecutionStatus.FAILED, "boom", None)
        _take_message(r, run.id, step)
        record = store.get_execution(run.id)
        assert record is not None and record.actions[step].status is ExecutionStatus.QUEUED


def test_a_run_refused_by_its_overlap_policy_sends_nothing(live: Live) -> None:
    system, r = live
    task = asyncio.run(system.create_task(**_spec(overlap="skip")))
    first = system.trigger_sync(task.id)
    second = system.trigger_sync(task.id)  # the first one is still queued: skipped

    assert second.status is ExecutionStatus.SKIPPED
    assert [m["headers"]["tdauto_record"] for m in _queued(r)] == [
        r.get(f"tdauto:execution:{first.id}").decode()  # type: ignore[union-attr]
    ]


def test_the_store_pushes_only_with_an_admitted_record(tmp_path: Path, redis_url: str) -> None:
    store, other = RedisStore(redis_url), RedisStore(redis_url)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    runtime = Runtime(Settings(data_dir=tmp_path / "data"), store, REGISTRY, Recorder())
    task, _ = store.create_task(_cleanup_task(runtime), None)
    definition = store.task_definition(task.id)
    assert definition is not None

    def queue(e: Execution) -> None:
        e.status = ExecutionStatus.QUEUED

    records: list[str] = []

    def message(e: Execution, record: str) -> list[tuple[str, str]]:
        records.append(record)
        return [("q", f"message of {e.id}")]

    # admitted: the record and its message, both; the message was made from the record
    run = new_execution(task, REGISTRY, Trigger.MANUAL)
    written, blockers = store.create_admitted(run, 1, None, queue, definition.version, message)
    assert blockers == [] and r.lrange("q", 0, -1) == [f"message of {run.id}"]
    assert records == [r.get(f"tdauto:execution:{run.id}")]
    # blocked (max 1 active), an existing id, a stale definition: no message
    late = new_execution(task, REGISTRY, Trigger.MANUAL)
    _, blockers = store.create_admitted(late, 1, None, queue, definition.version, message)
    assert blockers == [written.id]
    _, blockers = store.create_admitted(run.model_copy(), 9, None, queue, None, message)
    assert blockers is None
    other.save_task(task.model_copy(update={"priority": 9}))
    with pytest.raises(StaleDefinition):
        store.create_admitted(
            new_execution(task, REGISTRY, Trigger.MANUAL),
            9,
            None,
            queue,
            definition.version,
            message,
        )
    assert r.llen("q") == 1
    r.close()
    store.close()
    other.close()


def test_only_a_redis_store_on_the_brokers_own_redis_pushes(tmp_path: Path, redis_url: str) -> None:
    store = RedisStore(redis_url)
    files = FileStore(tmp_path / "data")
    try:
        assert store.pushes_messages(redis_url)
        assert not store.pushes_messages(redis_url.rsplit("/", 1)[0] + "/5")  # another db
        assert not files.pushes_messages(redis_url)
        with pytest.raises(ValueError, match="cannot push messages"):
            files.create_admitted(
                Execution(task_id="t", task_name="t"),
                None,
                None,
                lambda e: None,
                None,
                lambda e, r: [],
            )
        assert outbox.applies("redis://localhost:6379/0")
        assert not outbox.applies("rediss://localhost:6379/0") and not outbox.applies(None)
    finally:
        store.close()


def test_outside_held_the_transport_publishes_as_kombu(live: Live) -> None:
    system, r = live
    with outbox.held() as pushes:
        system.app.send_task("tdauto.action.cleanup", args=["x", 0], queue="tdauto.cpu")
    assert len(pushes) == 1 and _queued(r) == []  # held: nothing reached the queue
    key, payload = pushes[0]
    assert key == "tdauto.cpu" and json.loads(payload)["headers"]["argsrepr"] == "['x', 0]"

    system.app.send_task("tdauto.action.cleanup", args=["y", 0], queue="tdauto.cpu")
    assert [m["headers"]["argsrepr"] for m in _queued(r)] == ["['y', 0]"]


def test_the_engine_sender_reaches_an_undeclared_queue_without_declaring_it(live: Live) -> None:
    """tdauto's sender skips kombu's per-publish queue declare on Redis (tasks.sender): a
    message still lands on the list of a queue that no worker has declared yet, and events
    still show its arguments."""
    system, r = live
    send = sender(system.app)

    send("tdauto.action.cleanup", ["z", 1], "tdauto.storage.nobody-yet", priority=9)

    [message] = _queued(r)
    assert message["headers"]["argsrepr"] == "['z', 1]"
    assert json.loads(base64.b64decode(message["body"]))[0] == ["z", 1]
    assert message["properties"]["delivery_info"]["routing_key"] == "tdauto.storage.nobody-yet"
    assert list(r.scan_iter("_kombu.binding.*")) == []  # nothing was declared


def test_in_local_mode_the_engine_sender_reaches_an_undeclared_queue_too(tmp_path: Path) -> None:
    """The local broker (local mode) takes an undeclared queue's message as well: it is a
    row of the queue named by the routing key, which a worker reading that queue picks up."""
    system = AutomationSystems(data_dir=tmp_path / "data")
    try:
        sender(system.app)("tdauto.action.cleanup", ["z", 1], "tdauto.storage.nobody-yet")
        db = broker_folder(system._rt.settings) / DB_NAME
        with closing(sqlite3.connect(db)) as conn:
            rows = conn.execute("SELECT queue, payload FROM messages").fetchall()
        [message] = [json.loads(payload) for queue, payload in rows if queue.endswith("nobody-yet")]
    finally:
        system.app.close()
    assert message["headers"]["argsrepr"] == "['z', 1]"
    assert json.loads(base64.b64decode(message["body"]))[0] == ["z", 1]


# --- helpers ---------------------------------------------------------------------------------


CLEANUP = {"type": "cleanup", "params": {"older_than": "30days", "dry_run": True}}


def _spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "sweep",
        "type": "maintenance",
        "schedule": "daily",
        "schedule_config": {"hour": 2, "minute": 0},
        "actions": [CLEANUP],
    }
    spec.update(changes)
    return spec

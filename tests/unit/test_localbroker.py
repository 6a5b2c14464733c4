"""The local broker (``tdauto.localbroker``): kombu semantics on SQLite, and the faults a
consumer must survive (docs/architecture.md, "The local broker")."""

from __future__ import annotations

import logging
import multiprocessing
import select
import socket
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.exceptions import ChannelError, ContentDisallowed, OperationalError

from tdauto.localbroker import DB_NAME, WAKE_DIR, counts, queue_depths, storage
from tdauto.localbroker.wake import Waker
from tests.support.localbroker import connection, insert_raw, rows, take_and_die


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "data" / "broker"


def test_put_get_ack_and_the_row_is_held_until_acked(folder: Path) -> None:
    with connection(folder) as conn:
        q = conn.SimpleQueue("jobs")
        q.put({"n": 1})
        assert queue_depths(folder) == {"jobs": 1}
        message = q.get(timeout=1)
        assert message.payload == {"n": 1}
        assert counts(folder) == {"ready": 0, "held": 1, "bad": 0}
        message.ack()
        assert counts(folder) == {"ready": 0, "held": 0, "bad": 0}
        with pytest.raises(q.Empty):
            q.get(timeout=0.05)


def test_requeue_reject_and_a_clean_close_give_messages_back(folder: Path) -> None:
    with connection(folder) as conn:
        q = conn.SimpleQueue("jobs")
        q.put({"n": 1})
        first = q.get(timeout=1)
        first.requeue()
        again = q.get(timeout=1)
        assert again.payload == {"n": 1} and again.delivery_info.get("redelivered") is not False
        again.reject()  # requeue=False: set aside, not dropped silently
        assert rows(folder, "SELECT reason FROM bad") == [("rejected by its consumer"
                                                           " (requeue=False)",)]
        q.put({"n": 2})
        assert q.get(timeout=1).payload == {"n": 2}  # delivered, never acked
    assert counts(folder) == {"ready": 1, "held": 0, "bad": 1}  # the close restored it
    with connection(folder) as conn:
        assert conn.SimpleQueue("jobs").get(timeout=1).payload == {"n": 2}


def test_fanout_reaches_queues_bound_by_other_connections(folder: Path) -> None:
    """Bindings live in the database, so a publisher that never declared them finds them
    (Celery's pidbox: ``app.control`` broadcasts to every worker's own queue)."""
    fan = Exchange("bcast", type="fanout")
    got: dict[str, list[object]] = {"a": [], "b": []}
    with connection(folder) as one, connection(folder) as two:
        consumers = []
        for conn, name in ((one, "a"), (two, "b")):
            queue = Queue(f"node-{name}", fan, auto_delete=True)
            consumer = Consumer(conn.channel(), [queue], accept=["json"],
                                callbacks=[lambda body, m, n=name: (got[n].append(body), m.ack())])
            consumer.consume()
            consumers.append(consumer)
        with connection(folder) as publisher:
            Producer(publisher.channel()).publish({"ping": 1}, exchange=fan, serializer="json")
        one.drain_events(timeout=1)
        two.drain_events(timeout=1)
    assert got == {"a": [{"ping": 1}], "b": [{"ping": 1}]}


def test_most_urgent_first_then_queue_order(folder: Path) -> None:
    """kombu priority 0 first, as Redis's ``priority_steps`` (tdauto sends 9 - its priority);
    at equal priority, the queue listed first."""
    with connection(folder) as conn:
        producer = Producer(conn.channel(), serializer="json")
        for queue, priority in (("low", 5), ("high", 5), ("low", 9), ("low", 0)):
            producer.publish({"q": queue, "p": priority}, routing_key=queue, priority=priority)
        order: list[tuple[str, int]] = []
        consumer = Consumer(conn.channel(), [Queue("high"), Queue("low")], accept=["json"],
                            callbacks=[lambda body, m: (order.append((body["q"], body["p"])),
                                                        m.ack())])
        consumer.consume()
        for _ in range(4):
            conn.drain_events(timeout=1)
    assert order == [("low", 0), ("high", 5), ("low", 5), ("low", 9)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "not JSON"),
        ('{"body": "eyJh", "content-type": "application/json", "prop', "not JSON"),
        ("[1, 2]", "not a kombu message"),
        ('{"body": "x", "content-type": "application/x-python-serialize", "properties": {}}',
         "JSON only"),
        ('{"body": "abc", "content-type": "application/json",'
         ' "properties": {"body_encoding": "base64"}}', "body does not decode"),
    ],
    ids=["empty", "truncated", "not-a-message", "pickle", "bad-base64"],
)
def test_a_bad_row_is_set_aside_and_counted_while_a_good_one_is_delivered(
    folder: Path, payload: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with connection(folder) as conn:
        q = conn.SimpleQueue("jobs")
        insert_raw(folder, "jobs", payload)
        q.put({"good": True})
        with caplog.at_level(logging.ERROR, "tdauto.localbroker"):
            message = q.get(timeout=1)
        assert message.payload == {"good": True}
        message.ack()
        assert conn.transport.bad == 1
    [(queue, stored, why)] = rows(folder, "SELECT queue, payload, reason FROM bad")
    assert (queue, stored) == ("jobs", payload) and reason in why
    assert counts(folder) == {"ready": 0, "held": 0, "bad": 1}
    assert any("moved to the bad table" in r.getMessage() for r in caplog.records)


def test_json_only_a_pickle_publish_is_refused(folder: Path) -> None:
    with connection(folder) as conn, pytest.raises(ContentDisallowed):
        conn.SimpleQueue("jobs").put({"n": 1}, serializer="pickle")
    assert counts(folder)["ready"] == 0


def _read_only(path: Path) -> sqlite3.Connection:
    """The broker database as a read-only folder leaves it (tests run as root, whom file
    modes do not stop, so the database is opened read-only instead)."""
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None,
                           check_same_thread=False)


def test_a_read_only_broker_is_reported_and_loses_or_doubles_nothing(
    folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with connection(folder) as conn:
        conn.SimpleQueue("jobs").put({"n": 1})
    monkeypatch.setattr(storage, "connect", _read_only)
    with connection(folder) as conn, caplog.at_level(logging.ERROR, "tdauto.localbroker"):
        q = conn.SimpleQueue("jobs")
        with pytest.raises(ChannelError, match="readonly"):
            q.put({"n": 2})  # the publisher is told; nothing half-written
        with pytest.raises(q.Empty):
            q.get(timeout=0.3)  # the consumer keeps running: no claim, no crash
    assert any("cannot claim a message" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    assert counts(folder) == {"ready": 1, "held": 0, "bad": 0}
    with connection(folder) as conn:
        q = conn.SimpleQueue("jobs")
        q.get(timeout=1).ack()
        with pytest.raises(q.Empty):
            q.get(timeout=0.1)


def test_a_broker_folder_that_cannot_be_made_is_a_connection_error_retried_until_fixed(
    tmp_path: Path,
) -> None:
    """A worker keeps running on such a folder: Celery retries connection errors with
    backoff, one line a try (seen: "Cannot connect ... Trying again in 2.00 seconds")."""
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data dir should be")
    folder = blocker / "broker"
    with connection(folder) as conn:
        # kombu raises its own OperationalError for a connection error it gave up on.
        with pytest.raises(OperationalError, match="make its folder a writable") as no:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
        assert isinstance(no.value.__cause__, storage.BrokerUnavailable)
        assert isinstance(no.value.__cause__, conn.recoverable_connection_errors)
        assert "Not a directory" in str(no.value)
    blocker.unlink()
    with connection(folder) as conn:
        q = conn.SimpleQueue("jobs")
        q.put({"n": 1})
        assert q.get(timeout=1).payload == {"n": 1}


def test_an_ack_that_cannot_be_written_is_retried_not_redelivered(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk between delivery and ack: the row stays held by this live consumer (no one
    else takes it) and the ack is written once the disk takes writes again."""
    with connection(folder) as conn:
        q = conn.SimpleQueue("jobs")
        q.put({"n": 1})
        message = q.get(timeout=1)
        with conn.transport.db.use() as db:
            db.execute("PRAGMA query_only = ON")
        with caplog.at_level(logging.ERROR, "tdauto.localbroker"):
            message.ack()
        assert any("will retry" in r.getMessage() for r in caplog.records)
        assert counts(folder) == {"ready": 0, "held": 1, "bad": 0}
        with conn.transport.db.use() as db:
            db.execute("PRAGMA query_only = OFF")
        with pytest.raises(q.Empty):
            q.get(timeout=0.1)  # the next claim writes the pending ack first
    assert counts(folder) == {"ready": 0, "held": 0, "bad": 0}


def test_a_killed_consumers_unacked_message_is_restored(folder: Path) -> None:
    with connection(folder) as conn:
        conn.SimpleQueue("jobs").put({"n": 1})
    child = multiprocessing.get_context("spawn").Process(
        target=take_and_die, args=(str(folder), "jobs"))
    child.start()
    child.join(30)
    assert child.exitcode == -9
    assert counts(folder) == {"ready": 0, "held": 1, "bad": 0}  # held by a dead process
    with connection(folder) as conn:
        message = conn.SimpleQueue("jobs").get(timeout=3)
        assert message.payload == {"n": 1} and message.delivery_info.get("redelivered")
        message.ack()
    assert counts(folder) == {"ready": 0, "held": 0, "bad": 0}


def test_files_are_private_to_their_owner(folder: Path) -> None:
    with connection(folder) as conn:
        q = conn.SimpleQueue("jobs")
        q.put({"n": 1})
        q.get(timeout=1).ack()  # a consumer: its wake-up socket exists
        for path in (folder, folder / WAKE_DIR):
            assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
        files = [folder / DB_NAME, *folder.glob(f"{DB_NAME}-*"), *(folder / WAKE_DIR).iterdir()]
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_no_ack_consumer_does_not_hold_its_messages(folder: Path) -> None:
    """Celery's pidbox consumes with ``no_ack``: delivered is done, nothing stays held."""
    got: list[object] = []
    with connection(folder) as conn:
        conn.SimpleQueue("pidbox").put({"n": 1})
        Consumer(conn.channel(), [Queue("pidbox")], no_ack=True, accept=["json"],
                 callbacks=[lambda body, m: got.append(body)]).consume()
        conn.drain_events(timeout=1)
        assert got == [{"n": 1}]
        assert counts(folder) == {"ready": 0, "held": 0, "bad": 0}


def test_a_full_prefetch_returns_at_once_so_the_caller_can_ack(folder: Path) -> None:
    """Celery acks from its loop between two ``drain_events`` calls: one that waited out its
    timeout while the prefetch is full would hold every ack for 2 s."""
    got: list[Any] = []
    with connection(folder) as conn:
        q = conn.SimpleQueue("jobs")
        q.put({"n": 1})
        q.put({"n": 2})
        Consumer(conn.channel(), [Queue("jobs")], accept=["json"], prefetch_count=1,
                 callbacks=[lambda body, m: got.append(m)]).consume()
        conn.drain_events(timeout=2)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=2)
        assert time.monotonic() - start < 0.5 and len(got) == 1
        got[0].ack()
        conn.drain_events(timeout=2)
        assert [m.payload for m in got] == [{"n": 1}, {"n": 2}]


def test_a_delivery_not_yet_acked_returns_at_once_even_with_room_to_take_more(
    folder: Path,
) -> None:
    """A worker with a free slot but a task done and not yet acked (Celery acks between two
    ``drain_events`` calls) must get its loop back at once, or the ack waits 2 s and a
    kill meanwhile runs the task again."""
    got: list[Any] = []
    with connection(folder) as conn:
        conn.SimpleQueue("jobs").put({"n": 1})
        Consumer(conn.channel(), [Queue("jobs")], accept=["json"], prefetch_count=2,
                 callbacks=[lambda body, m: got.append(m)]).consume()
        conn.drain_events(timeout=2)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=2)
        assert time.monotonic() - start < 0.5 and len(got) == 1


def test_a_consumer_is_not_taken_for_dead_when_the_clock_is_stepped(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psutil's start times follow the boot time the kernel reports now, which a step of the
    wall clock (NTP, a resumed VM) moves: the owner id must not."""
    me = storage.owner_id()
    real = psutil.Process.create_time
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: real(self) + 1.0)
    monkeypatch.setattr(storage, "_me", (0, ""))
    assert storage.owner_id() == me
    assert storage.owner_alive(me)
    assert not storage.owner_alive("999999999:" + me.partition(":")[2])


def test_wake_ups_still_arrive_past_sockets_nobody_reads(folder: Path) -> None:
    """Datagrams are charged to their sender until read: 40 sockets of clients that pinged
    once and never read again must not swallow a live consumer's wake-ups."""
    wake = folder / WAKE_DIR
    wake.mkdir(parents=True, exist_ok=True)
    deaf = []
    for n in range(40):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(wake / f"deaf-{n}.sock"))
        deaf.append(sock)
    publisher = Waker(wake)
    for _ in range(50):
        publisher.wake_all()
    consumer = Waker(wake)
    listening = consumer.listen()
    assert listening is not None
    publisher.wake_all()
    assert select.select([listening], [], [], 1.0)[0] == [listening]
    for sock in deaf:
        sock.close()
    consumer.close()


def test_a_full_disk_refuses_the_publish_and_keeps_serving_what_is_there(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite's own "database or disk is full" (``max_page_count`` at the current size)."""
    with connection(folder) as conn:
        q = conn.SimpleQueue("jobs")
        q.put({"n": 1})
        with conn.transport.db.use() as db:
            (pages,) = db.execute("PRAGMA page_count").fetchone()
            db.execute(f"PRAGMA max_page_count = {pages}")
        with caplog.at_level(logging.ERROR, "tdauto.localbroker"), \
                pytest.raises(ChannelError, match="full"):
            q.put({"big": "x" * 100_000})
        assert any("cannot store a message" in r.getMessage() for r in caplog.records)
        message = q.get(timeout=1)
        assert message.payload == {"n": 1}
        message.ack()
        with pytest.raises(q.Empty):
            q.get(timeout=0.1)
    assert counts(folder) == {"ready": 0, "held": 0, "bad": 0}


def test_a_child_forked_while_a_thread_uses_the_database_does_not_hang(folder: Path) -> None:
    """Celery forks its pool children while its timer thread may be publishing an event."""
    with connection(folder) as conn:
        conn.SimpleQueue("jobs").put({"n": 1})
        db = conn.transport.db
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with db.use():
                held.set()
                release.wait(10)

        thread = threading.Thread(target=hold)
        thread.start()
        held.wait(5)
        try:
            child = multiprocessing.get_context("fork").Process(target=_use_and_close, args=(db,))
            child.start()
            child.join(10)
        finally:
            release.set()
            thread.join()
        if child.is_alive():
            child.kill()
        assert child.exitcode == 0


def _use_and_close(db: storage.Database) -> None:
    with db.use() as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone() == (1,)
    db.close()


def test_messages_of_the_old_filesystem_broker_move_over(folder: Path) -> None:
    """An upgrade keeps what kombu's ``filesystem://`` transport had queued; a file it had
    left empty (celery/kombu#1551) is set aside, not raised."""
    legacy = folder / "queue"
    legacy.mkdir(parents=True)
    with Connection("filesystem://", transport_options={
            "data_folder_in": str(legacy), "data_folder_out": str(legacy),
            "control_folder": str(folder / "control")}) as old:
        old.SimpleQueue("jobs", serializer="json").put({"n": 1})
    (legacy / "1_x.jobs.msg").write_text("")
    with connection(folder, legacy_queue_folder=str(legacy)) as conn:
        q = conn.SimpleQueue("jobs")
        message = q.get(timeout=1)
        assert message.payload == {"n": 1}
        message.ack()
        with pytest.raises(q.Empty):
            q.get(timeout=0.1)
    assert list(legacy.iterdir()) == []
    assert counts(folder) == {"ready": 0, "held": 0, "bad": 1}

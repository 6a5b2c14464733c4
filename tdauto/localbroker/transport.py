"""The kombu virtual channel and transport of the local broker (docs/architecture.md,
"The local broker")."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError, ContentDisallowed
from kombu.transport import virtual
from kombu.utils.json import dumps, loads

from tdauto.localbroker.storage import (
    DB_NAME,
    WAKE_DIR,
    BrokerUnavailable,
    Database,
    import_legacy,
    owner_id,
)
from tdauto.localbroker.wake import Waker

log = logging.getLogger(__name__)

JSON = "application/json"
SWEEP_S = 1.0  # how often a consumer looks for messages held by dead processes
BLOCKED_WAIT_S = (0.001, 0.05)  # first and longest wait while prefetch is full (see drain_events)
REPORT_S = 30.0  # the same storage error is logged at most this often per transport
BAD_IN_A_ROW = 100  # rows set aside in one claim before the consumer lets others run
REJECTED = "rejected by its consumer (requeue=False)"


class QoS(virtual.QoS):
    """kombu's QoS, with ack, reject and restore done on the rows in the broker."""

    channel: Channel

    def ack(self, delivery_tag: str) -> None:
        self.channel.finish("ack", [delivery_tag])
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self.channel.finish("requeue" if requeue else "reject", [delivery_tag])
        self._quick_ack(delivery_tag)

    def restore_unacked(self) -> list[Any]:
        self._flush()
        tags = list(self._delivered)
        self._delivered.clear()
        self.channel.finish("requeue", tags)
        return []


SET_ASIDE = "INSERT INTO bad (queue, payload, reason, at) SELECT queue, payload, ?, ?"
DELETE_HELD = "DELETE FROM messages WHERE id = ? AND owner = ?"
REQUEUE_HELD = "UPDATE messages SET owner = NULL, redelivered = 1 WHERE id = ? AND owner = ?"


class Channel(virtual.Channel):
    """A virtual channel whose queues and bindings are rows of the broker database."""

    connection: Transport
    QoS = QoS
    supports_fanout = True

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._private: set[str] = set()
        self._retry: list[tuple[str, str]] = []
        self._claims: dict[tuple[str, ...], str] = {}
        self._no_ack: dict[str, str] = {}  # consumer tag -> queue (Celery's pidbox consumer)

    @property
    def db(self) -> Database:
        return self.connection.db

    # --- publishing ----------------------------------------------------------------------

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        self._insert([queue], message)

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str,
                    **kwargs: Any) -> None:
        self._insert([queue for _, _, queue in self.get_table(exchange)], message)

    def _insert(self, queues: Sequence[str], message: dict[str, Any]) -> None:
        if message.get("content-type") != JSON:
            raise ContentDisallowed(
                f"the local broker takes JSON only, not {message.get('content-type')!r}")
        if not queues:
            return
        rows = [(q, self._get_message_priority(message), dumps(message)) for q in queues]
        insert = "INSERT INTO messages (queue, priority, payload) VALUES (?, ?, ?)"
        try:
            if len(rows) == 1:
                with self.db.use() as db:
                    db.execute(insert, rows[0])
            else:
                with self.db.transaction() as db:
                    db.executemany(insert, rows)
        except sqlite3.Error as exc:
            self.connection.report(f"cannot store a message for {list(queues)}", exc)
            raise ChannelError(f"local broker {self.db.path}: message not stored: {exc}") from exc
        self.connection.waker.wake_all()

    # --- bindings (shared by every process, as Celery's pidbox needs) ---------------------

    @contextlib.contextmanager
    def _storage(self, what: str) -> Iterator[sqlite3.Connection]:
        """The database for one operation; its error logged and raised as kombu's."""
        try:
            with self.db.use() as db:
                yield db
        except sqlite3.Error as exc:
            self.connection.report(f"cannot {what}", exc)
            raise ChannelError(f"local broker {self.db.path}: cannot {what}: {exc}") from exc

    def get_table(self, exchange: str) -> list[tuple[str, str, str]]:
        with self._storage(f"read the bindings of {exchange!r}") as db:
            return db.execute(
                "SELECT routing_key, pattern, queue FROM bindings WHERE exchange = ?",
                (exchange,)).fetchall()

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        if kwargs.get("auto_delete") or kwargs.get("exclusive"):
            self._private.add(queue)  # bound with its owner: dropped when the owner is gone

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        owner = owner_id() if queue in self._private else None
        key = (exchange, routing_key or "", pattern or "", queue or "")
        with self._storage(f"bind {queue!r} to {exchange!r}") as db:
            found = db.execute(
                "SELECT owner FROM bindings WHERE exchange = ? AND routing_key = ? AND"
                " pattern = ? AND queue = ?", key).fetchall()
            if found != [(owner,)]:  # a read when it is there already: a worker restarts
                db.execute(
                    "INSERT INTO bindings VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
                    " SET owner = excluded.owner", (*key, owner))

    def queue_unbind(self, queue: str, exchange: str | None = None, routing_key: str = "",
                     arguments: Any = None, **kwargs: Any) -> None:
        super().queue_unbind(queue, exchange, routing_key, arguments, **kwargs)
        with self._storage(f"unbind {queue!r}") as db:
            db.execute("DELETE FROM bindings WHERE queue = ? AND exchange = ? AND routing_key = ?",
                       (queue, exchange or "", routing_key or ""))

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        with self._storage(f"delete {queue!r}") as db:
            db.execute("DELETE FROM bindings WHERE queue = ?", (queue,))
            db.execute("DELETE FROM messages WHERE queue = ? AND owner IS NULL", (queue,))

    def _size(self, queue: str) -> int:
        with self._storage(f"count {queue!r}") as db:
            (n,) = db.execute("SELECT COUNT(*) FROM messages WHERE queue = ? AND owner IS NULL",
                              (queue,)).fetchone()
        return int(n)

    def _purge(self, queue: str) -> int:
        with self._storage(f"purge {queue!r}") as db:
            return db.execute("DELETE FROM messages WHERE queue = ? AND owner IS NULL",
                              (queue,)).rowcount

    # --- consuming -----------------------------------------------------------------------

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str,
                      **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack[consumer_tag] = queue
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        self._no_ack.pop(consumer_tag, None)
        return super().basic_cancel(consumer_tag)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack, **kwargs)
        if message is not None and no_ack:
            self.finish("ack", [message.delivery_tag])
        return message

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        return self._claim([queue])[0]

    def _poll(self, cycle: Any, callback: Any, timeout: float | None = None) -> Any:
        """One claim across every queue consumed, most urgent first (kombu priority 0, as
        Redis's ``priority_steps``), then in the order the queues were listed."""
        payload, queue = self._claim(list(dict.fromkeys(self._active_queues)))
        if queue in self._no_ack.values():  # nobody will ack it: delivered is done
            self.finish("ack", [payload["properties"]["delivery_tag"]])
        return callback(payload, queue)

    def _claim_sql(self, queues: tuple[str, ...]) -> str:
        sql = self._claims.get(queues)
        if sql is None:
            heads = " UNION ALL ".join(
                f"SELECT * FROM (SELECT id, priority, {rank} AS rank FROM messages"
                " WHERE queue = ? AND owner IS NULL ORDER BY priority, id LIMIT 1)"
                for rank in range(len(queues)))
            sql = self._claims[queues] = (
                f"UPDATE messages SET owner = ? WHERE id = (SELECT id FROM ({heads})"
                " ORDER BY priority, rank, id LIMIT 1) RETURNING id, queue, payload, redelivered")
        return sql

    def _claim(self, queues: list[str]) -> tuple[dict[str, Any], str]:
        if not queues:
            raise Empty()
        self._flush_retry()
        sql = self._claim_sql(tuple(queues))
        for _ in range(BAD_IN_A_ROW):
            try:
                with self.db.use() as db:
                    rows = db.execute(sql, (owner_id(), *queues)).fetchall()
            except sqlite3.Error as exc:
                self.connection.report("cannot claim a message", exc)
                raise Empty() from None
            if not rows:
                raise Empty()
            rowid, queue, text, redelivered = rows[0]
            payload, reason = self._decode(text)
            if payload is None:
                self._set_aside(str(rowid), queue, reason)
                continue
            payload["properties"]["delivery_tag"] = str(rowid)  # ack and reject find the row
            if redelivered:
                payload["properties"]["delivery_info"]["redelivered"] = True
            return payload, queue
        raise Empty()

    def _decode(self, text: str) -> tuple[dict[str, Any] | None, str]:
        """The message in ``text``, or None and why it cannot be delivered."""
        try:
            payload = loads(text)
        except Exception as exc:
            return None, f"not JSON ({exc})"
        if not isinstance(payload, dict) or not isinstance(payload.get("properties"), dict):
            return None, "not a kombu message"
        if payload.get("content-type") != JSON:
            return None, f"content type {payload.get('content-type')!r} (JSON only)"
        props = payload["properties"]
        if not isinstance(props.setdefault("delivery_info", {}), dict):
            return None, "delivery_info is not an object"
        body = payload.get("body")
        try:
            if body:
                self.decode_body(body, props.get("body_encoding"))
        except Exception as exc:
            return None, f"body does not decode ({exc})"
        return payload, ""

    def _set_aside(self, tag: str, queue: str, reason: str) -> None:
        log.error("local broker: message %s of queue %s moved to the bad table: %s",
                  tag, queue, reason)
        self.connection.bad += 1
        try:
            with self.db.transaction() as db:
                db.execute(SET_ASIDE + " FROM messages WHERE id = ?",
                           (reason, time.time(), int(tag)))
                db.execute("DELETE FROM messages WHERE id = ?", (int(tag),))
        except sqlite3.Error as exc:
            self.connection.report("cannot set a bad message aside", exc)
            self._retry.append(("reject", tag))

    def finish(self, op: str, tags: Sequence[str]) -> None:
        """Ack, requeue or reject (to ``bad``) delivered rows; kept to retry on a storage error,
        so a live consumer neither loses nor hands out twice what it holds."""
        if not tags:
            return
        held = [(int(tag), owner_id()) for tag in tags]
        try:
            with self.db.transaction() as db:
                if op == "reject":
                    db.executemany(SET_ASIDE + " FROM messages WHERE id = ? AND owner = ?",
                                   [(REJECTED, time.time(), *row) for row in held])
                db.executemany(REQUEUE_HELD if op == "requeue" else DELETE_HELD, held)
        except sqlite3.Error as exc:
            self.connection.report(f"cannot {op} {len(tags)} message(s); will retry", exc)
            self._retry.extend((op, tag) for tag in tags)
            return
        if op == "ack":
            self.connection.waker.wake_self()  # a prefetch slot is free
        else:
            self.connection.waker.wake_all()

    def _flush_retry(self) -> None:
        pending, self._retry = self._retry, []
        for op, tag in pending:
            self.finish(op, [tag])


class Transport(virtual.Transport):
    """``broker_transport = "tdauto.localbroker:Transport"``; transport option ``folder`` (the
    broker's folder) and ``polling_interval`` (the fallback wait, in seconds)."""

    Channel = Channel
    connection_errors = (*virtual.Transport.connection_errors, BrokerUnavailable)
    polling_interval = 1.0
    default_port = 0
    driver_type = driver_name = "tdauto-sqlite"
    implements = virtual.Transport.implements.extend(
        asynchronous=False, exchange_type=frozenset(["direct", "topic", "fanout"]))

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        folder = Path(client.transport_options.get("folder") or "broker")
        self.db = Database(folder / DB_NAME)
        self.waker = Waker(folder / WAKE_DIR)
        self.bad = 0  # messages this connection moved to the bad table
        self._next_sweep = 0.0
        self._blocked_wait = BLOCKED_WAIT_S[0]
        self._reported: dict[str, float] = {}
        legacy = client.transport_options.get("legacy_queue_folder")
        if legacy:
            try:
                import_legacy(self.db, Path(legacy))
            except (OSError, sqlite3.Error) as exc:
                self.report(f"cannot import the old broker's messages from {legacy}", exc)

    def establish_connection(self) -> Any:
        """Open the database now: a folder that cannot be used is then a connection error
        that Celery retries with backoff and one line a try, not a declare failing again and
        again right after each "Connected"."""
        with self.db.use():
            pass
        return super().establish_connection()

    def driver_version(self) -> str:
        return sqlite3.sqlite_version

    def report(self, what: str, exc: BaseException) -> None:
        """Log a storage error clearly, once per ``REPORT_S`` for the same one."""
        key = f"{what}: {exc}"
        now = time.monotonic()
        if now >= self._reported.get(key, 0.0):
            self._reported[key] = now + REPORT_S
            log.error("local broker %s: %s: %s", self.db.path, what, exc)

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """Deliver one message, waiting on the wake-up socket (at most ``polling_interval``
        at a time, which covers a lost wake-up) until ``timeout``.

        While a consumer holds a delivery not yet acked it returns within 1 to 50 ms instead:
        Celery acks from its own loop between two calls (``Consumer.call_soon``), so waiting
        here would delay the ack by the whole timeout (2 s in Celery's ``synloop``): the
        slot of a full prefetch stays taken, and a message already done stays held, to be
        run again if the worker is killed meanwhile.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.waker.clear()
            self._sweep()
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                self._blocked_wait = BLOCKED_WAIT_S[0]
                return
            except Empty:
                pass
            wait = self.polling_interval
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError()
                wait = min(wait, left)
            if any(len(ch.qos._delivered) > len(ch.qos._dirty) for ch in self.channels):
                self.waker.wait(min(wait, self._blocked_wait))
                self._blocked_wait = min(self._blocked_wait * 2, BLOCKED_WAIT_S[1])
                if deadline is not None:  # without a timeout, the caller expects a message
                    raise TimeoutError()
                continue
            self.waker.wait(wait)

    def _sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_S
        try:
            restored = self.db.sweep()
        except sqlite3.Error as exc:
            self.report("cannot look for dead consumers' messages", exc)
            return
        if restored:
            self.waker.wake_all()

    def close_connection(self, connection: Any) -> None:
        try:
            super().close_connection(connection)
        finally:
            self.waker.close()
            self.db.close()

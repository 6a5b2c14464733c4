"""The broker's database: schema, message owners, the shared connection and read-only
queries for monitoring (docs/architecture.md, "The local broker")."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

DB_NAME = "broker.db"
WAKE_DIR = "wake"

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, priority INTEGER NOT NULL,
    payload TEXT NOT NULL, owner TEXT, redelivered INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS ready ON messages (queue, priority, id) WHERE owner IS NULL;
CREATE INDEX IF NOT EXISTS held ON messages (owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS bindings (
    exchange TEXT NOT NULL, routing_key TEXT NOT NULL, pattern TEXT NOT NULL,
    queue TEXT NOT NULL, owner TEXT, PRIMARY KEY (exchange, routing_key, pattern, queue));
CREATE TABLE IF NOT EXISTS bad (
    id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT, payload TEXT, reason TEXT NOT NULL,
    at REAL NOT NULL);
"""

_me: tuple[int, str] = (0, "")
# connections a forked child inherited: kept open, as closing one there could let SQLite
# checkpoint and remove the WAL under the parent (sqlite.org/howtocorrupt.html, 2.6)
_inherited: list[sqlite3.Connection] = []


def _started(pid: int) -> tuple[str, bool] | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22), and
    whether it is a zombie; None when there is no such process. Ticks, not psutil's epoch
    seconds: those are computed from the boot time the kernel reports now, which moves when
    the wall clock is stepped (NTP, a resumed VM), and every live consumer would look dead."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()  # the name (field 2) may hold ") "
    return fields[19].decode(), fields[0] == b"Z"


def _start_mark(pid: int) -> str | None:
    """The start of ``pid`` as an owner id holds it: ticks on Linux, else psutil's time."""
    if os.path.isdir("/proc/self"):
        started = _started(pid)
        return None if started is None or started[1] else started[0]
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"{proc.create_time():.2f}"
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return "?"


def owner_id() -> str:
    """This process as a message owner: ``pid:start``, which a reused pid does not match."""
    global _me
    pid = os.getpid()
    if _me[0] != pid:
        _me = (pid, f"{pid}:{_start_mark(pid)}")
    return _me[1]


def owner_alive(owner: str) -> bool:
    """Whether the process ``owner`` names still runs (a zombie does not)."""
    pid, _, started = owner.partition(":")
    if not pid.isdigit():
        return False
    mark = _start_mark(int(pid))
    return mark == "?" or (mark is not None and mark == started)


class BrokerUnavailable(ConnectionError):
    """The broker's folder or database cannot be opened (not a directory, read-only, full).

    A connection error, so Celery's consumer logs it and retries with backoff, as it does
    for a Redis that is down, instead of the worker exiting: it resumes once the folder is
    fixed."""


def private_dir(path: Path) -> None:
    """Create ``path`` (and parents) readable by its owner only."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        path.chmod(0o700)


def connect(path: Path) -> sqlite3.Connection:
    """Open the broker database (created 0600, WAL mode, the schema in place). Tests replace
    this to stand for a read-only or full disk."""
    private_dir(path.parent)
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: a process crash loses nothing
        db.execute("PRAGMA journal_size_limit=67108864")  # the WAL shrinks back after a burst
        db.executescript(SCHEMA)
    except sqlite3.Error as exc:  # a read-only or full disk: each operation reports it
        log.error("local broker %s: cannot set up the database: %s", path, exc)
    return db


class Database:
    """One SQLite connection per kombu connection and process, shared by its threads (Celery
    acks from pool threads) under a lock; reopened after a fork."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._locks = (os.getpid(), threading.RLock())
        self._db: sqlite3.Connection | None = None
        self._pid = 0

    def _lock(self) -> threading.RLock:
        """This process's lock: a child forked while another thread (Celery's timer, sending
        an event) held the parent's would wait on it for ever."""
        if self._locks[0] != os.getpid():
            self._locks = (os.getpid(), threading.RLock())
        return self._locks[1]

    @contextlib.contextmanager
    def use(self) -> Iterator[sqlite3.Connection]:
        with self._lock():
            if self._db is None or self._pid != os.getpid():
                if self._db is not None:
                    _inherited.append(self._db)
                try:
                    self._db, self._pid = connect(self.path), os.getpid()
                except (OSError, sqlite3.Error) as exc:
                    self._db = None
                    raise BrokerUnavailable(
                        f"local broker {self.path}: cannot open it: {exc}; make its folder "
                        "a writable directory (it is under TDAUTO_DATA_DIR)"
                    ) from exc
            yield self._db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` (the write lock first, so two writers never deadlock on an
        upgrade) to ``COMMIT``; anything that fails, the commit too, rolls back, so the
        connection is never left inside a transaction for the next caller."""
        with self.use() as db:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock():
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            elif self._db is not None:
                _inherited.append(self._db)
            self._db = None

    def sweep(self) -> int:
        """Give back the messages of owners that are gone, and drop the private queues (Celery's
        pidbox and reply queues) they bound; how many messages came back."""
        me, restored = owner_id(), 0
        with self.use() as db:
            owners = {o for (o,) in db.execute(
                "SELECT DISTINCT owner FROM messages WHERE owner IS NOT NULL"
                " UNION SELECT DISTINCT owner FROM bindings WHERE owner IS NOT NULL")}
        for owner in sorted(o for o in owners if o != me and not owner_alive(o)):
            with self.transaction() as db:
                back = db.execute(
                    "UPDATE messages SET owner = NULL, redelivered = 1 WHERE owner = ?", (owner,)
                ).rowcount
                queues = [q for (q,) in db.execute(
                    "SELECT queue FROM bindings WHERE owner = ?", (owner,))]
                db.execute("DELETE FROM bindings WHERE owner = ?", (owner,))
                for queue in queues:
                    if db.execute("SELECT 1 FROM bindings WHERE queue = ?", (queue,)).fetchone():
                        continue
                    db.execute("DELETE FROM messages WHERE queue = ?", (queue,))
            if back:
                log.warning("local broker: consumer %s is gone; its %d unacked message(s) are"
                            " back in their queues", owner, back)
            restored += back
        return restored


_imported: set[Path] = set()


def import_legacy(db: Database, folder: Path) -> int:
    """Move the message files kombu's ``filesystem://`` transport left in ``folder`` (local
    mode before this broker: ``<ms>_<uuid>.<queue>.msg``, body JSON) into the database, once
    per process; a file is claimed by a rename, so two processes never import it twice.
    Rows that do not decode are set aside by the consumer as any other; how many moved."""
    if folder in _imported or not folder.is_dir():
        return 0
    _imported.add(folder)
    moved = 0
    for path in sorted(folder.glob("*.msg")):
        claimed = path.with_name(path.name + ".importing")
        try:
            path.rename(claimed)
            text = claimed.read_text(errors="replace")
        except OSError:
            continue  # another process took it
        queue = path.name[: -len(".msg")].partition(".")[2]
        try:
            priority = int(json.loads(text)["properties"]["priority"])
        except (ValueError, KeyError, TypeError):
            priority = 0
        try:
            with db.use() as conn:
                conn.execute("INSERT INTO messages (queue, priority, payload) VALUES (?, ?, ?)",
                             (queue, min(max(priority, 0), 9), text))
        except sqlite3.Error:
            claimed.rename(path)  # left for the next start
            _imported.discard(folder)
            raise
        claimed.unlink()
        moved += 1
    if moved:
        log.warning("local broker: %d message(s) of the old filesystem broker moved from %s",
                    moved, folder)
    return moved


def _read(folder: Path, sql: str) -> list[tuple[Any, ...]]:
    path = folder / DB_NAME
    if not path.exists():
        return []
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def queue_depths(folder: Path) -> dict[str, int]:
    """Messages waiting per queue (not those a consumer holds), read-only."""
    return {q: int(n) for q, n in _read(
        folder, "SELECT queue, COUNT(*) FROM messages WHERE owner IS NULL GROUP BY queue")}


def counts(folder: Path) -> dict[str, int]:
    """Messages ``ready``, ``held`` by a consumer (delivered, not acked) and set aside ``bad``."""
    rows = _read(folder, "SELECT (SELECT COUNT(*) FROM messages WHERE owner IS NULL),"
                 " (SELECT COUNT(*) FROM messages WHERE owner IS NOT NULL),"
                 " (SELECT COUNT(*) FROM bad)")
    ready, held, bad = rows[0] if rows else (0, 0, 0)
    return {"ready": int(ready), "held": int(held), "bad": int(bad)}

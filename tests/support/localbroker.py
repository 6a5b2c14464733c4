"""Helpers for the local broker's tests: a kombu connection on a folder, raw rows, and the
processes of the stress test (functions here, so that ``spawn`` children can import them)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from kombu import Connection

from tdauto.localbroker import DB_NAME, Transport


def connection(folder: Path, **options: Any) -> Connection:
    """A kombu connection on the local broker in ``folder`` (fallback wait 0.2 s)."""
    return Connection(
        "tdauto-local://",
        transport=Transport,
        transport_options={"folder": str(folder), "polling_interval": 0.2, **options},
    )


def rows(folder: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(folder / DB_NAME)) as db:
        return db.execute(sql, args).fetchall()


def insert_raw(folder: Path, queue: str, payload: str, priority: int = 0) -> None:
    """A row as a broken or foreign writer could leave it (no validation)."""
    with contextlib.closing(sqlite3.connect(folder / DB_NAME)) as db, db:
        db.execute("INSERT INTO messages (queue, priority, payload) VALUES (?, ?, ?)",
                   (queue, priority, payload))


def take_and_die(folder: str, queue: str) -> None:
    """Child process: receive one message from ``queue``, never ack it, SIGKILL itself."""
    with connection(Path(folder)) as conn:
        message = conn.SimpleQueue(queue).get(timeout=10)
        assert message is not None
        os.kill(os.getpid(), signal.SIGKILL)


def produce(folder: str, queue: str, ids: range) -> None:
    """Stress producer: one JSON message per id."""
    with connection(Path(folder)) as conn:
        q = conn.SimpleQueue(queue, serializer="json")
        for i in ids:
            q.put({"id": i})


def consume(folder: str, queue: str, out: str, total: int, idle_s: float) -> None:
    """Stress consumer: record each id to ``out`` (one line, flushed, before the ack), until
    ``total`` lines exist across every consumer's file or nothing came for ``idle_s``."""
    outdir = Path(out).parent
    with connection(Path(folder)) as conn, open(out, "a", buffering=1) as record:
        q = conn.SimpleQueue(queue, serializer="json")
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            try:
                message = q.get(timeout=0.5)
            except q.Empty:
                if done(outdir) >= total:
                    return
                continue
            record.write(f"{message.payload['id']}\n")
            message.ack()
            last = time.monotonic()


def done(outdir: Path) -> int:
    """Distinct ids recorded so far by every consumer."""
    return len(recorded(outdir))


def recorded(outdir: Path) -> set[int]:
    seen: set[int] = set()
    for path in outdir.glob("consumer-*.ids"):
        seen.update(int(line) for line in path.read_text().split() if line.strip())
    return seen

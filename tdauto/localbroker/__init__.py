"""The embedded broker of local mode: a kombu virtual transport on SQLite in WAL mode.

Why it exists (docs/architecture.md, "The local broker"): kombu's ``filesystem://`` transport
names a message file before it writes it, so a consumer can read an empty file and die
(celery/kombu#1551), and its consumers poll. Here a message is one row written by one
statement and claimed by one ``UPDATE ... RETURNING``; a row that cannot be decoded is moved
to the ``bad`` table instead of raised; a delivered message stays in the table, marked with
its consumer (pid and process start time), until it is acked (deleted) or given back, and a
consumer whose owner process is gone has its messages restored by any live consumer.
Consumers sleep on a Unix datagram socket in ``wake/`` that every publish pokes; the polling
interval is only the fallback. It imports nothing of tdauto above ``tdauto.settings``.
"""

from tdauto.localbroker.storage import DB_NAME, WAKE_DIR, counts, queue_depths
from tdauto.localbroker.transport import Channel, Transport

__all__ = ["DB_NAME", "WAKE_DIR", "Channel", "Transport", "counts", "queue_depths"]

"""What the resource manager needs from Celery and the broker: queue depths, consumer control
(``add_consumer`` / ``cancel_consumer``) and moving a dead host's queue back to the shared one.

Kept apart from ``manager.py`` so the manager's decisions can be tested with a fake broker;
this is the one place besides ``app.py`` and ``router.py`` that speaks Celery here.

Redis layout (kombu's transport with ``priority_steps`` 0..9): a queue ``q`` is ten lists,
``q`` (step 0, served first) and ``q\\x06\\x16<n>`` for steps 1 to 9. Producers ``LPUSH``,
consumers ``BRPOP``, so the oldest message of a list is at its right end.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from celery import Celery

from tdauto.settings import Settings

log = logging.getLogger(__name__)
PRIORITY_SEP = "\x06\x16"
STEPS = range(10)
REPLY_TIMEOUT_S = 2.0


class Broker(Protocol):
    """The manager's view of the broker."""

    def depths(self, queues: list[str]) -> dict[str, int]:
        """Messages waiting in each of ``queues`` (every priority list summed)."""
        ...

    def add_consumer(self, node: str, queue: str) -> bool:
        """Tell worker ``node`` to read ``queue`` too; True when it confirmed."""
        ...

    def cancel_consumer(self, node: str, queue: str) -> bool:
        """Tell worker ``node`` to stop reading ``queue``; True when it confirmed."""
        ...

    def move_messages(self, source: str, target: str) -> int:
        """Move every message waiting in ``source`` to ``target`` (same priority); how many."""
        ...


def priority_lists(queue: str) -> list[str]:
    """kombu's Redis lists of ``queue``, most urgent first."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in STEPS]


def _confirmed(replies: list[dict[str, Any]] | None, node: str) -> bool:
    for reply in replies or []:
        answer = reply.get(node)
        if isinstance(answer, dict) and "ok" in answer:
            return True
    return False


class CeleryBroker:
    """Depths read straight from the broker (Redis ``LLEN`` in a pipeline, or the local
    broker's database), control through ``app.control`` with the worker's confirmation."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self._app = app
        self._settings = settings
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            from tdauto.redisconn import Endpoint

            self._client = Endpoint.of(self._settings).client(
                socket_timeout=5, socket_connect_timeout=5
            )
        return self._client

    def depths(self, queues: list[str]) -> dict[str, int]:
        if self._settings.local_mode:
            from tdauto.actions.monitor import local_queue_depths

            found = local_queue_depths(self._settings)
            return {q: int(found.get(q, 0)) for q in queues}
        pipe = self._redis().pipeline(transaction=False)
        for queue in queues:
            for key in priority_lists(queue):
                pipe.llen(key)
        lengths = pipe.execute()
        steps = len(STEPS)
        return {
            queue: sum(int(n) for n in lengths[i * steps : (i + 1) * steps])
            for i, queue in enumerate(queues)
        }

    def _control(self, command: str, node: str, queue: str) -> bool:
        replies = self._app.control.broadcast(
            command,
            arguments={"queue": queue},
            destination=[node],
            reply=True,
            timeout=REPLY_TIMEOUT_S,
            limit=1,
        )
        ok = _confirmed(replies, node)
        if not ok:
            log.warning("%s %s on %s: no confirmation (%r)", command, queue, node, replies)
        return ok

    def add_consumer(self, node: str, queue: str) -> bool:
        return self._control("add_consumer", node, queue)

    def cancel_consumer(self, node: str, queue: str) -> bool:
        return self._control("cancel_consumer", node, queue)

    def move_messages(self, source: str, target: str) -> int:
        if self._settings.local_mode:
            return 0  # one host: there is no other host's queue to rescue
        client = self._redis()
        moved = 0
        for src, dst in zip(priority_lists(source), priority_lists(target), strict=True):
            # LMOVE is atomic per message: a message is in one list or the other, never lost
            while client.lmove(src, dst, "RIGHT", "LEFT") is not None:
                moved += 1
        return moved

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

"""An action's message written in the same Redis step as the record that sends it (the outbox).

A trigger records the run QUEUED and publishes its first action. Done as two steps, a
process that dies (or a broker call that fails) between them leaves a run that is QUEUED
for good with no message on its way: nothing redelivers a message that was never sent.
When the broker is the store's own Redis, tdauto closes that gap. The message is built by
Celery and kombu as usual, but its push (kombu's ``LPUSH`` onto the queue's list) is held
back and handed to the store, whose ``create_admitted.lua`` pushes it only if it writes the
admitted record. A run that is refused (blocked, stale definition, existing id) therefore
sends nothing, and an admitted one always has its message. It also saves a round trip and
kombu's per-publish client.

Every other write that marks an action sent does the same (``executions.Announce``, an
``Effects.outbox`` pushed by ``cas_execution.lua``): the next action of a run, the first
recovery step, a scheduled run's start (``tdauto.run``), a retry or re-queue, and a run
that leaves WAITING. Before, a worker or beat that died between such a write and its
publish left the action QUEUED with no message. A ``tdauto.run`` redelivered then found
its run past PENDING and did nothing; the next action waited for the redelivery of the
ending action's message, up to the broker's visibility timeout. So do the writes that
create a PENDING run, the beat's claim of a slot and a ``run_after`` dependent
(``executions.create_and_start``, pushed by ``create_execution.lua``): their ``tdauto.run``
goes with the record.

How: :class:`Transport` is kombu's Redis transport with one change. Inside :func:`held`,
``Channel._put`` appends ``(list key, payload)`` to the held list instead of pushing. The
key and payload are exactly what kombu would push: the priority list's name from
``_q_for_pri`` and the envelope kombu serialized. Everything else (routing, envelope, the
``before_task_publish`` and ``after_task_publish`` signals) is unchanged Celery. One
consequence: ``after_task_publish`` fires even for a message the store then drops, because
its run was refused. Outside :func:`held` the transport is kombu's, and workers consume
with it unchanged.

Only for ``redis://`` and ``sentinel://`` brokers (``applies``; the sentinel transport gets
the same change, :class:`SentinelTransport`, since after a failover the store's client and
kombu's both follow the sentinels to the same new master). TLS and other transports publish
the ordinary way, in two steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps

Push = tuple[str, str]
"""A held message: the Redis list to ``LPUSH`` it onto, and its payload."""

TRANSPORT = "tdauto.engine.outbox:Transport"
"""Celery's ``broker_transport`` for a broker whose pushes can be held."""

SENTINEL_TRANSPORT = "tdauto.engine.outbox:SentinelTransport"
"""The same for a ``sentinel://`` broker."""

_held: ContextVar[list[Push] | None] = ContextVar("tdauto_outbox_held", default=None)


def applies(broker_url: str | None) -> bool:
    """Whether a broker at ``broker_url`` uses :class:`Transport` (``redis://``) or
    :class:`SentinelTransport` (``sentinel://``)."""
    return transport_for(broker_url) is not None


def transport_for(broker_url: str | None) -> str | None:
    """Celery's ``broker_transport`` for ``broker_url``, or None when pushes cannot be held."""
    if broker_url is None:
        return None
    if broker_url.startswith("redis://"):
        return TRANSPORT
    if broker_url.startswith("sentinel://"):
        return SENTINEL_TRANSPORT
    return None


@contextmanager
def held() -> Iterator[list[Push]]:
    """Collect, instead of pushing, the messages this context publishes (see module doc)."""
    pushes: list[Push] = []
    token = _held.set(pushes)
    try:
        yield pushes
    finally:
        _held.reset(token)


def _put(channel: kombu_redis.Channel, queue: str, message: dict[str, Any], **kwargs: Any) -> bool:
    """Hold the push when inside :func:`held` (True), else leave it to kombu (False)."""
    pushes = _held.get()
    if pushes is None:
        return False
    priority = channel._get_message_priority(message, reverse=False)
    key = channel.global_keyprefix + channel._q_for_pri(queue, priority)
    pushes.append((key, dumps(message)))
    return True


class Channel(kombu_redis.Channel):
    """kombu's Redis channel whose pushes :func:`held` can take."""

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        if not _put(self, queue, message, **kwargs):
            super()._put(queue, message, **kwargs)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


class SentinelChannel(kombu_redis.SentinelChannel):
    """kombu's Sentinel channel whose pushes :func:`held` can take."""

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        if not _put(self, queue, message, **kwargs):
            super()._put(queue, message, **kwargs)


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with :class:`SentinelChannel`."""

    Channel = SentinelChannel

"""Hooks a tdauto worker process installs in Celery before it starts consuming.

Thread pools and late acks (celery/celery#6941): with ``-P threads`` and prefetch 1, a
finished task's ack waits until the worker's event loop wakes for some other reason, which on
an idle Redis connection can take seconds; the next message is not fetched until then, so a
storage pool ran two actions a second instead of dozens. A timer that fires every
``WAKE_S`` keeps the loop turning, so acks (and the next fetch) go out at once. Prefork pools
do not need it: their results arrive on a pipe the loop already watches.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready

WAKE_S = 0.05


def _noop() -> None:
    """Nothing: the timer firing is what wakes the event loop."""


def _keep_thread_pool_loop_awake(sender: Any = None, **_: Any) -> None:
    pool = getattr(sender, "pool", None)
    timer = getattr(sender, "timer", None)
    if pool is None or timer is None:
        return
    if type(pool).__module__.endswith(".thread"):
        timer.call_repeatedly(WAKE_S, _noop)


def install() -> None:
    """Connect the hooks (idempotent: Celery signals dedupe by receiver)."""
    worker_ready.connect(_keep_thread_pool_loop_awake, weak=False)

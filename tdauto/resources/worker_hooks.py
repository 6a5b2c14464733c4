"""Hooks a tdauto worker process installs in Celery before it starts consuming: the load
sampler (``sampler.py``, whose samples also say what this worker can run), and a wake-up
for thread pools.

Thread pools and late acks (celery/celery#6941): with ``-P threads`` and prefetch 1, a
finished task's ack waits until the worker's event loop wakes for some other reason, which on
an idle Redis connection can take seconds; the next message is not fetched until then, so a
storage pool ran two actions a second instead of dozens. A timer that fires every
``WAKE_S`` keeps the loop turning, so acks (and the next fetch) go out at once. Prefork pools
do not need it: their results arrive on a pipe the loop already watches.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready, worker_shutdown

from tdauto.resources import capabilities
from tdauto.resources.sampler import Sampler
from tdauto.settings import Settings
from tdauto.store.backend import Store

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


def _active_requests() -> int:
    from celery.worker import state

    return len(state.active_requests)


def install(store: Store, settings: Settings, pool: str, concurrency: int) -> None:
    """Connect the hooks: the thread-pool wake-up and this worker's load sampler."""
    from tdauto.actions.registry import REGISTRY  # filled by make_app's load_plugins

    worker_ready.connect(_keep_thread_pool_loop_awake, weak=False)
    runs = capabilities.advertised(settings, REGISTRY.names())
    sampler = Sampler(store, settings, pool, concurrency, _active_requests, runs)

    def start_sampler(**_: Any) -> None:
        if not sampler.is_alive():
            sampler.start()

    def stop_sampler(**_: Any) -> None:
        sampler.stop()

    worker_ready.connect(start_sampler, weak=False)
    worker_shutdown.connect(stop_sampler, weak=False)

"""The router: which queue an action of a resource class goes to, by the current weights.

Every pool on host H reads ``tdauto.<class>.<H>`` and the shared ``tdauto.<class>``. The router
sends an action to the host queue of a host with weight (``weights.py``), so work goes where
there is room and the freest hosts get the most; it falls back to the shared queue, which
every pool of the class reads and so balances by itself (whoever is free takes the next
message), when

- the manager has written no weights yet, or its last record is stale (older than
  ``STALE_TICKS`` of its periods: the manager or beat is down, so the weights say nothing),
- no host of the class has weight, or
- the hosts' free slots seen at the last tick are spoken for already: each pick uses one of
  the picked host's ``slots`` until the manager writes a new record, so a burst of a
  thousand actions never piles onto one host's queue; the surplus waits in the shared queue.

Among hosts with slots left, picks follow the weights by smooth weighted round-robin (nginx's):
deterministic, and the spread follows the weights even over a few picks.

The hot path stays cheap: the weights are cached and read from the store at most once every
``refresh_s`` (one GET in Redis); a pick is a few dict operations under a lock. A store that
cannot be read leaves the cache as it was (and it goes stale), never fails a send.

Celery specifics live here and in ``tdauto.app``: :meth:`Router.__call__` has the signature of
a Celery router (``task_routes``), for action tasks sent without a queue, and
:func:`routed_sender` wraps the engine's sender, which always names the class's shared queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tdauto.engine.runtime import Sender
from tdauto.resources.weights import CLASSES, host_queue
from tdauto.store.backend import Store

log = logging.getLogger(__name__)
STALE_TICKS = 3.0
STALE_MIN_S = 5.0
ACTION_PREFIX = "tdauto.action."
SHARED = {f"tdauto.{c}": c for c in CLASSES}


@dataclass
class _Host:
    name: str
    weight: float
    slots: int
    current: float = 0.0


def is_stale(record: dict[str, Any], now: float) -> bool:
    """True when the manager has not written weights for ``STALE_TICKS`` of its periods."""
    period = float(record.get("interval_s", 0.0))
    return now - float(record.get("at", 0.0)) > max(STALE_TICKS * period, STALE_MIN_S)


class Router:
    """Picks ``tdauto.<class>.<host>`` by weight, else ``tdauto.<class>``; thread-safe."""

    def __init__(
        self,
        store: Store,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        class_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._clock = clock
        self._class_of = class_of
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._record: dict[str, Any] | None = None
        self._version: tuple[Any, Any] | None = None
        self._hosts: dict[str, list[_Host]] = {}

    def queue(self, resource_class: str) -> str:
        """The queue for the next action of ``resource_class``."""
        shared = f"tdauto.{resource_class}"
        with self._lock:
            now = self._clock()
            if now - self._read_at >= self._refresh_s:
                self._reload(now)
            if self._record is None or is_stale(self._record, now):
                return shared
            host = self._pick(self._hosts.get(resource_class, []))
        return shared if host is None else host_queue(resource_class, host)

    def _reload(self, now: float) -> None:
        self._read_at = now
        try:
            record = self._store.weights()
        except Exception:  # a send must not fail because the weights cannot be read
            log.warning("could not read routing weights; keeping the cached ones", exc_info=True)
            return
        version = None if record is None else (record.get("tick"), record.get("at"))
        if version == self._version:
            return  # same tick: the slots already used stay used
        self._record, self._version = record, version
        self._hosts = {}
        for klass, hosts in (record or {}).get("classes", {}).items():
            self._hosts[klass] = [
                _Host(name, float(e["weight"]), int(e.get("slots", 0)))
                for name, e in sorted(hosts.items())
                if float(e.get("weight", 0.0)) > 0 and int(e.get("slots", 0)) > 0
            ]

    @staticmethod
    def _pick(hosts: list[_Host]) -> str | None:
        """Smooth weighted round-robin among hosts with slots left; uses one slot."""
        open_hosts = [h for h in hosts if h.slots > 0]
        if not open_hosts:
            return None
        total = sum(h.weight for h in open_hosts)
        for h in open_hosts:
            h.current += h.weight
        best = max(open_hosts, key=lambda h: h.current)
        best.current -= total
        best.slots -= 1
        return best.name

    def __call__(
        self,
        name: str,
        args: Any,
        kwargs: Any,
        options: dict[str, Any],
        task: Any = None,
        **_: Any,
    ) -> dict[str, Any] | None:
        """Celery router (``task_routes``): an action task sent without a queue goes to a host
        queue of its action's class. Other tasks are left to the next router."""
        if not name.startswith(ACTION_PREFIX) or self._class_of is None:
            return None
        klass = self._class_of(name[len(ACTION_PREFIX) :])
        if klass is None:
            return None
        queue = self.queue(klass)
        return {"queue": queue, "routing_key": queue}


def routed_sender(send: Sender, router: Router) -> Sender:
    """``send`` with action tasks bound for a class's shared queue re-routed by ``router``;
    a queue the engine chose itself (a host queue, passing work to a host with room) stays."""

    def routed(
        name: str,
        args: list[Any],
        queue: str,
        priority: int = 5,
        *,
        shadow: str | None = None,
        record: str | None = None,
    ) -> None:
        klass = SHARED.get(queue)
        if klass is not None and name.startswith(ACTION_PREFIX):
            queue = router.queue(klass)
        send(name, args, queue, priority, shadow=shadow, record=record)

    return routed

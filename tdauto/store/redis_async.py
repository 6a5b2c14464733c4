"""Async Redis clients for the store's awaitable calls, one per event loop.

``AutomationSystems.create_task`` is a coroutine; handing each create to a worker thread and
back cost more than the create itself (a thread wake-up each way), so ``RedisStore`` awaits
that round trip on the caller's loop with ``redis.asyncio``. Its connections belong to the
loop that opened them, and one store may outlive several loops (each ``asyncio.run`` makes a
new one), so each loop gets its own client: made on first use, closed when the loop finalizes
its async generators (``asyncio.run`` does, before it closes the loop), and otherwise dropped
with the loop. Nothing connects at import or construction.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript

from tdauto.redisconn import Endpoint


def client_factory(endpoint: Endpoint, reconnect_s: float) -> Callable[[], aredis.Redis]:
    """Clients set up as the store's sync client is (decoded replies, the same reconnect
    budget, connect timeout and keepalive)."""

    def make() -> aredis.Redis:
        return endpoint.async_client(
            decode_responses=True,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=int(reconnect_s)),
            retry_on_error=[aredis.ConnectionError, aredis.TimeoutError],
            socket_connect_timeout=2.0,
            socket_keepalive=True,
        )

    return make


@dataclass
class _LoopClient:
    client: aredis.Redis
    closer: AsyncGenerator[None, None] | None = None
    scripts: dict[str, AsyncScript] = field(default_factory=dict)


async def _close_at_shutdown(client: aredis.Redis) -> AsyncGenerator[None, None]:
    """Suspended once started; the loop's ``shutdown_asyncgens`` resumes it to close."""
    try:
        yield
    finally:
        await client.aclose()


class LoopClients:
    """The running loop's client and its registered Lua scripts (``sources``: name -> Lua)."""

    def __init__(self, factory: Callable[[], aredis.Redis], sources: dict[str, str]) -> None:
        self._factory = factory
        self._sources = sources
        self._lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )

    def script(self, name: str) -> AsyncScript:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._clients.get(loop)
            if entry is None:
                entry = self._clients[loop] = self._open()
            script = entry.scripts.get(name)
            if script is None:
                script = entry.scripts[name] = entry.client.register_script(self._sources[name])
        return script

    def _open(self) -> _LoopClient:
        entry = _LoopClient(self._factory())
        closer = _close_at_shutdown(entry.client)
        # Advancing it to its yield registers it with the loop (the first-iteration hook) and
        # runs no await, so a plain send(None) finishes the step here.
        step = closer.asend(None)
        try:
            step.send(None)
        except StopIteration:
            entry.closer = closer  # kept: the loop only holds it weakly
        return entry

    def drop(self) -> None:
        """Forget every loop's client (``RedisStore.close``); a loop still running closes
        its own at shutdown."""
        with self._lock:
            self._clients.clear()

"""Runs one action's handler under watch: lease renewal, cancel, timeout.

The handler runs in the calling thread (the Celery task's own: no thread is started per
action, which on a busy host cost more than a quick action itself). One watcher thread per
process looks at every running action once a second: it flushes the action's log, renews its
lease every ``lease_renew_s`` (a renewal that fails means the reaper gave the action to
another worker, so this attempt stops), looks whether the execution was cancelled or timed
out (anywhere, by anyone), and at the action's timeout stops the attempt.

Stopping means: set the handler's cancel event (the cooperative signal), SIGTERM then SIGKILL
every process group the handler started, and after ``kill_grace_s`` raise ``ActionStopped``
inside the handler's thread (``PyThreadState_SetAsyncExc``), which ends a pure-Python handler
that ignores the event at its next line. A handler blocked inside one C call (a socket read
without a timeout) ends when that call returns.

The store calls (renewal, cancel poll) run on a second thread, so a store that hangs (a host
cut off from Redis) cannot stall the watch: an attempt whose lease was last renewed longer
ago than ``lease_ttl_s - lease_renew_s`` is stopped as LOST before its lease can expire,
since the reaper may then give the action to another host.

A handler that finishes within a second never sees the watch: fast actions pay for a set
insertion, nothing more. The lease itself is set and taken by the writes that start and end
the attempt (``runner``), in the same store call as the record.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tdauto.actions.context import ActionContext
from tdauto.actions.registry import ActionDef
from tdauto.engine.runtime import Runtime

LEASES = "leases"
POLL_S = 1.0
log = logging.getLogger(__name__)


class Outcome(Enum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"  # the execution ended meanwhile (cancel, deadline, replace)
    LOST = "lost"  # the lease was taken: another worker runs this action now


class ActionStopped(BaseException):
    """Raised inside a handler that did not stop within ``kill_grace_s`` of being told to."""


@dataclass
class Result:
    outcome: Outcome
    output: Any = None
    error: BaseException | None = None


def lease_member(execution_id: str, index: int, attempt: int) -> str:
    return f"{execution_id}:{index}:{attempt}"


def parse_lease(member: str) -> tuple[str, int, int]:
    execution_id, index, attempt = member.rsplit(":", 2)
    return execution_id, int(index), int(attempt)


@dataclass(eq=False)
class _Watch:
    """One running attempt, as the watcher sees it."""

    rt: Runtime
    ctx: ActionContext
    member: str
    timeout_s: float | None
    thread_id: int
    started: float = field(default_factory=time.monotonic)
    last_renew: float = field(default_factory=time.monotonic)
    """When the lease was last set or renewed (monotonic s; the attempt's start sets it)."""
    io_pending: bool = False
    reason: Outcome | None = None
    done: bool = False
    injected: bool = False


class _Watcher:
    """The per-process watcher threads and the attempts they watch (started on first use,
    again in a forked child, where the parent's threads do not exist): one that decides
    without I/O, one that talks to the store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._active: set[_Watch] = set()
        self._thread: threading.Thread | None = None
        self._io: queue.SimpleQueue[_Watch] = queue.SimpleQueue()
        self._pid = 0

    def add(self, watch: _Watch) -> None:
        with self.lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                if self._pid != os.getpid():  # a forked child: the parent's watches are not ours
                    self._active = set()
                    self._io = queue.SimpleQueue()
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._loop, name="tdauto-watch", daemon=True
                )
                self._thread.start()
                threading.Thread(
                    target=self._io_loop, args=(self._io,), name="tdauto-watch-io", daemon=True
                ).start()
            self._active.add(watch)

    def finish(self, watch: _Watch) -> None:
        """The handler returned: no stop may reach it any more."""
        with self.lock:
            watch.done = True
            self._active.discard(watch)
            if watch.injected:  # a stop raised too late must not escape into the engine
                _set_async_exc(watch.thread_id, None)

    def _loop(self) -> None:
        while True:
            time.sleep(POLL_S)
            with self.lock:
                watches = list(self._active)
            for watch in watches:
                try:
                    self._check(watch)
                except Exception:  # one watch's trouble must not end the watch of all
                    log.warning("watching %s failed", watch.member, exc_info=True)

    def _check(self, watch: _Watch) -> None:
        """Timeout and lease age, decided here without I/O; the rest is queued for the store
        thread (one request per attempt at a time). A stopped attempt whose handler has not
        returned yet keeps its lease renewed, so its action is not handed to another host
        while it still runs."""
        now = time.monotonic()
        if now - watch.started < POLL_S:
            return
        settings = watch.rt.settings
        if watch.reason is not None:
            if watch.reason is not Outcome.LOST and not watch.io_pending:
                watch.io_pending = True
                self._io.put(watch)
        elif watch.timeout_s is not None and now - watch.started >= watch.timeout_s:
            self._stop_for(watch, Outcome.TIMEOUT)
        elif now - watch.last_renew >= settings.lease_ttl_s - settings.lease_renew_s:
            age_s = now - watch.last_renew
            log.warning("%s: lease not renewed for %.0fs: stopping", watch.member, age_s)
            self._stop_for(watch, Outcome.LOST)
        elif not watch.io_pending:
            watch.io_pending = True
            self._io.put(watch)

    def _io_loop(self, requests: queue.SimpleQueue[_Watch]) -> None:
        while True:
            watch = requests.get()
            try:
                self._look(watch)
            except Exception:  # the store may be down for a moment: look again later
                log.warning("watching %s failed", watch.member, exc_info=True)
            finally:
                watch.io_pending = False

    def _look(self, watch: _Watch) -> None:
        """Flush the log, renew the lease when due, and look whether the run ended."""
        if watch.done or watch.reason is Outcome.LOST:
            return
        for handler in watch.ctx.logger.handlers:
            handler.flush()  # a quiet action's lines still reach the log within a second
        settings, store = watch.rt.settings, watch.rt.store
        asked = time.monotonic()
        if asked - watch.last_renew >= settings.lease_renew_s:
            renewed = store.timer_set(
                LEASES, watch.member, time.time() + settings.lease_ttl_s, only="existing"
            )
            if not renewed:
                self._stop_for(watch, Outcome.LOST)
                return
            watch.last_renew = asked  # counted from the request: the lease may be older
        if watch.reason is not None:
            return  # stopping already: only the lease is kept
        current = store.get_execution(watch.ctx.execution_id)
        if current is None or current.status.terminal:
            self._stop_for(watch, Outcome.CANCELLED)

    def _stop_for(self, watch: _Watch, reason: Outcome) -> None:
        with self.lock:
            if watch.reason is not None or watch.done:
                return
            watch.reason = reason
        threading.Thread(target=self._stop, args=(watch,), daemon=True).start()

    def _stop(self, watch: _Watch) -> None:
        """Cancel event, process groups, then (after the grace) the handler's own thread. A
        LOST attempt gets no grace: its lease is about to end, and another host may start the
        action then."""
        grace_s = 0.0 if watch.reason is Outcome.LOST else watch.rt.settings.kill_grace_s
        watch.ctx.cancel_event.set()
        watch.ctx.processes.stop_all(grace_s)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and not watch.done:
            time.sleep(0.05)
        with self.lock:
            if not watch.done and not watch.injected:
                watch.injected = True
                _set_async_exc(watch.thread_id, ActionStopped)
                log.warning("%s ignored its stop signal: interrupting it", watch.member)


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


_WATCHER = _Watcher()


def run_watched(
    rt: Runtime,
    definition: ActionDef,
    ctx: ActionContext,
    kwargs: dict[str, Any],
    timeout_s: float | None,
) -> Result:
    """Run ``definition.handler(ctx, **kwargs)`` under watch and say how it ended."""
    watch = _Watch(
        rt=rt,
        ctx=ctx,
        member=lease_member(ctx.execution_id, ctx.index, ctx.attempt),
        timeout_s=timeout_s,
        thread_id=threading.get_ident(),
    )
    output: Any = None
    error: BaseException | None = None
    try:
        _WATCHER.add(watch)
        try:
            output = definition.handler(ctx, **kwargs)
        finally:
            _WATCHER.finish(watch)
    except ActionStopped:
        _WATCHER.finish(watch)
    except BaseException as exc:  # recorded, not raised: the outcome reports it
        error = exc
    if watch.reason is not None:
        return Result(watch.reason, error=error)
    if error is not None:
        return Result(Outcome.ERROR, error=error)
    return Result(Outcome.OK, output=output)

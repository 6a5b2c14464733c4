"""Write-behind of an action's success: the worker's task returns while its end is written.

A pool child that has run an action would otherwise wait for the success write's round
trip before Celery can ack the message and hand it the next one. Here the write runs on
one thread per process while the child reports back and takes its next message; the next
task a thread runs first waits for its own previous write (``drain``), so at most one end
per task thread is ever in flight, and it has landed before that thread claims anything.

Nothing is lost by it. The message is acked before its end is written, so a process killed
in between leaves the action RUNNING under a lease with no message; the reaper re-queues it
when the lease expires, exactly as for a process killed just before the write (whose
redelivered message finds the live lease and is dropped). A write that fails (Redis gone for
longer than the client's retries) is logged, and the same lease recovers the action. A pool
child that exits gracefully (recycled, a warm shutdown) finishes its writes first
(``drain_all``, from Celery's ``worker_process_shutdown``). ``tdauto worker`` turns it on
(``install``) for a prefork pool when ``TDAUTO_WRITE_BEHIND`` is set; a Runtime without it
writes every end in line. Thread pools keep their writes in line: their task threads would
queue on the one writer, and a success queued behind others (its lease no longer renewed)
could outlive its lease.

It pays where a pool's processes would otherwise sit waiting for that round trip, as in a
pool of one process: 1.22x the executions/s of the same worker without it, with quick
actions on 2 CPUs (median of 4 alternating pairs). A Redis on another host should gain more
(a longer round trip hidden); that was not measured. Where the workers already fill the CPUs
(two processes on 2 CPUs), other processes use that wait anyway, and the extra thread's
wake-ups cost more than it hides (0.93x, median of 11 alternating pairs), which is why it is
off by default (``TDAUTO_WRITE_BEHIND``; ``benchmarks/throughput.py --write-behind``).

Only successes are written behind: a failure's write decides a retry or the recovery steps,
and a reserved action's release must follow its end, so those stay in line.

A write runs in a copy of the submitting thread's context (``contextvars``), so what it sends
(the run's next action, a dependent run) still names the task it came from: the worker's
task sets its Celery ids there (``tasks.LINEAGE``), which the writer thread, outside any
Celery task, would otherwise not have, and Flower's task tree would break at that message.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from celery.signals import worker_process_shutdown, worker_shutdown

if TYPE_CHECKING:
    from tdauto.engine.runtime import Runtime

log = logging.getLogger(__name__)
SIGNAL_UID = "tdauto-write-behind"


class WriteBehind:
    """One writer thread per process (made again in a forked child, where the parent's
    thread does not exist) and each task thread's last write."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        self._last = threading.local()

    def submit(self, write: Callable[[], None], what: str = "an action") -> None:
        """Run ``write`` on the writer thread, in this thread's context, after this thread's
        previous write; ``what`` names the action in the log if it fails."""
        self.drain()
        context = contextvars.copy_context()
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="tdauto-behind")
                self._pid = os.getpid()
            future = self._executor.submit(context.run, _logged, write, what)
        self._last.future = future

    def drain(self) -> None:
        """Wait until this thread's last write has landed (or failed, which it logged)."""
        future: Future[None] | None = getattr(self._last, "future", None)
        if future is not None:
            self._last.future = None
            if self._pid == os.getpid():
                future.result()

    def drain_all(self) -> None:
        """Wait for every write in flight in this process (it is about to exit): the writer
        is shut down once its queue is done; a later ``submit`` starts another."""
        with self._lock:
            executor = self._executor if self._pid == os.getpid() else None
            self._executor = None
        if executor is not None:
            executor.shutdown(wait=True)


def _logged(write: Callable[[], None], what: str) -> None:
    try:
        write()
    except Exception:  # unwritten, its lease lets the reaper re-queue it
        log.exception(
            "recording the success of %s failed (if the record still shows it running, the "
            "reaper re-queues it when its lease expires)",
            what,
        )


def install(runtime: Runtime) -> None:
    """Write actions' successes behind in this worker's task processes, each finishing its
    writes before it exits: a pool child replaced or shut down (``worker_process_shutdown``,
    sent in the child), or a thread or solo pool's worker stopping (``worker_shutdown``)."""
    behind = runtime.behind = WriteBehind()

    def finish(**_: Any) -> None:
        behind.drain_all()

    worker_process_shutdown.connect(finish, weak=False, dispatch_uid=SIGNAL_UID)
    worker_shutdown.connect(finish, weak=False, dispatch_uid=SIGNAL_UID)

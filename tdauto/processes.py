"""Starting and stopping tdauto's own processes: worker pools and the embedded beat.

Shared by ``AutomationSystems.start()`` and ``tdauto up`` so both run the same system: one
``tdauto worker POOL`` process per pool (cpu, memory, storage) and a beat. Workers are
started in their own session so a Ctrl-C in the terminal reaches the parent first, which
then stops them with SIGTERM (Celery's warm shutdown) and SIGKILL after a grace period
(``tdauto.supervisor``). A pool also follows the process that started it and stops when it
is gone, so even a SIGKILLed ``up`` leaves no pool running for long.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tdauto.private import opener, private_dir

if TYPE_CHECKING:  # Celery is imported when a beat is made: `up` starts its pools first
    from celery import Celery
    from celery.beat import EmbeddedService

    from tdauto.settings import Settings

POOLS = ("cpu", "memory", "storage")
# the pid of the process that started a pool (not a TDAUTO_ setting: Settings refuses those)
PARENT_ENV = "_TDAUTO_PARENT_PID"


def spawn_worker(
    pool: str, settings: Settings, log_dir: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``tdauto worker POOL`` with ``settings`` passed down as TDAUTO_* variables."""
    env = {**os.environ, **settings.child_env(), PARENT_ENV: str(os.getpid())}
    out = subprocess.DEVNULL
    if log_dir is not None:  # 0600: a worker's log holds what its actions log
        out = opener(str(private_dir(log_dir) / f"worker-{pool}.log"), os.O_WRONLY | os.O_APPEND)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "tdauto.cli", "worker", pool],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if out != subprocess.DEVNULL:
            os.close(out)  # the child has its own copy


def pool_spawns(settings: Settings) -> dict[str, Callable[[], subprocess.Popen[bytes]]]:
    """How to start each pool, logging to ``logs/processes/worker-<pool>.log`` (for a
    ``tdauto.supervisor.Supervisor``)."""
    log_dir = settings.data_path / "logs" / "processes"
    return {pool: functools.partial(spawn_worker, pool, settings, log_dir) for pool in POOLS}


def stop_processes(procs: list[subprocess.Popen[bytes]], grace_s: float = 15.0) -> None:
    """SIGTERM every worker's process group (Celery's warm shutdown), then SIGKILL whatever
    outlives ``grace_s``."""
    from tdauto.actions.process import stop_groups

    stop_groups(procs, grace_s)


def embedded_beat(app: Celery) -> EmbeddedService:
    """A beat running ``StoreScheduler`` in a daemon thread of this process."""
    from celery.beat import EmbeddedService

    from tdauto.scheduler import StoreScheduler

    service = EmbeddedService(app, thread=True, scheduler_cls=StoreScheduler)
    service.daemon = True
    return service


def follow_parent(interval_s: float = 1.0, grace_s: float = 15.0) -> None:
    """In a pool started by :func:`spawn_worker`: once the process that started it is gone
    (the kernel shows it by giving this one a new parent), stop as that process would have
    stopped it: SIGTERM to itself (Celery's warm shutdown), SIGKILL to its whole process
    group ``grace_s`` later. A pool whose parent died before it got here stops at once. Does
    nothing in a worker started by hand or by a service manager (no variable)."""
    expected = os.environ.pop(PARENT_ENV, None)
    if not expected or not expected.isdigit():
        return
    parent = int(expected)

    def loop() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=loop, name="tdauto-parent-follow", daemon=True).start()

"""Starting and stopping tdauto's own processes: worker pools and the embedded beat.

Shared by ``AutomationSystems.start()`` and ``tdauto up`` so both run the same system: one
``tdauto worker POOL`` process per pool (cpu, memory, storage) and a beat. Workers are
started in their own session so a Ctrl-C in the terminal reaches the parent first, which
then stops them with SIGTERM (Celery's warm shutdown) and SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from celery import Celery
from celery.beat import EmbeddedService

from tdauto.actions.process import stop_groups
from tdauto.settings import Settings

POOLS = ("cpu", "memory", "storage")


def spawn_worker(
    pool: str, settings: Settings, log_dir: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``tdauto worker POOL`` with ``settings`` passed down as TDAUTO_* variables."""
    env = {**os.environ, **settings.child_env()}
    out = subprocess.DEVNULL
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        out = (log_dir / f"worker-{pool}.log").open("ab")  # type: ignore[assignment]
    return subprocess.Popen(
        [sys.executable, "-m", "tdauto.cli", "worker", pool],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_processes(procs: list[subprocess.Popen[bytes]], grace_s: float = 15.0) -> None:
    """SIGTERM every worker's process group (Celery's warm shutdown), then SIGKILL whatever
    outlives ``grace_s``."""
    stop_groups(procs, grace_s)


def embedded_beat(app: Celery) -> EmbeddedService:
    """A beat running ``StoreScheduler`` in a daemon thread of this process."""
    from tdauto.scheduler import StoreScheduler

    service = EmbeddedService(app, thread=True, scheduler_cls=StoreScheduler)
    service.daemon = True
    return service

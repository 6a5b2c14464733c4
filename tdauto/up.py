"""``tdauto up``: the whole system on this host, under one supervising process.

It takes the data dir's lock (``tdauto.uplock``: one ``up`` per data dir), starts one pool
process per pool under a :class:`~tdauto.supervisor.Supervisor`, the embedded beat and
/metrics, and waits. Every way out stops every process it started: SIGINT, SIGTERM and
SIGHUP (a second signal skips the grace period), a pool in a crash loop, an error while
starting, and a console that went away (``up | tee log`` whose ``tee`` died with the same
Ctrl-C): the CLI prints through ``tdauto.console``, whose output to a broken pipe is
dropped, never raised into the shutdown. The CLI command only parses its options and calls
:func:`run_up`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from tdauto import datadir
from tdauto.errors import TdautoError
from tdauto.private import tighten
from tdauto.processes import embedded_beat, pool_spawns
from tdauto.settings import Settings
from tdauto.supervisor import CrashLoop, Supervisor
from tdauto.uplock import AlreadyRunning, UpLock

if TYPE_CHECKING:
    from tdauto.api import AutomationSystems

log = logging.getLogger(__name__)
Say = Callable[[Any], None]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stop:
    """The stop request of ``up``, set by a signal handler. Plain attributes, no lock: a
    handler runs between two bytecodes of the main thread, which may hold any lock then."""

    def __init__(self) -> None:
        self.requested = False
        self.stopping = False
        self.hurry = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.requested or self.stopping:
            self.hurry = True  # a second signal, or one during a stop: skip the grace period
        self.requested = True

    def install(self) -> None:
        """Handle the stop signals, but leave one this process inherited as ignored
        (``nohup tdauto up``, or ``tdauto up &`` in a shell without job control)."""
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, self)


def run_up(
    settings: Settings,
    make_system: Callable[[], AutomationSystems],
    *,
    ready_timeout_s: float,
    metrics_no_auth_on_localhost: bool,
    say: Say,
    warn: Say,
    on_ready: Callable[[AutomationSystems], None] = lambda system: None,
    grace_s: float = 15.0,
) -> int:
    """Run until stopped; returns the exit code (0 when stopped by a signal, 1 when a pool
    crash-looped). Raises the error that stopped a start-up, after stopping everything.

    The pools are started before ``make_system`` builds the facade (the Celery app, every
    action, the store), so their start-up and this process's overlap."""
    stop = _Stop()
    stop.install()
    lock = UpLock(settings.data_path)
    left = lock.acquire()
    if left:
        warn(f"killed {len(left)} pool process(es) a killed tdauto up left running: {left}")
    tighten(settings.data_path)  # records and logs an earlier tdauto left readable: 0600/0700
    started = time.monotonic()
    log_dir = settings.data_path / "logs" / "processes"
    supervisor = Supervisor(pool_spawns(settings), lock=lock, say=warn)
    beat = None
    metrics_server = None
    code = 0
    try:
        supervisor.start()
        mode = (
            "local (no server)" if settings.local_mode else f"distributed ({settings.broker_url})"
        )
        say(f"tdauto up: mode {mode}")
        say(f"data dir: {datadir.of(settings).describe()}")
        system = make_system()
        beat = embedded_beat(system.app)
        beat.start()
        metrics_server = _metrics_server(system, supervisor, metrics_no_auth_on_localhost, say)
        names = _wait_ready(system, supervisor, stop, ready_timeout_s)
        if names is not None:
            say(f"ready in {time.monotonic() - started:.1f}s: workers {', '.join(names)}")
            say(f"worker logs: {log_dir}")
            on_ready(system)
            say("Ctrl-C stops everything.")
        while not stop.requested:
            supervisor.check()
            time.sleep(0.2)
    except CrashLoop as exc:
        warn(f"{exc}; stopping")
        code = 1
    finally:
        stop.stopping = True
        with contextlib.suppress(Exception):
            say("stopping…")
        if beat is not None:  # asked now, waited for last: a tick may wait on a pool's lock
            with contextlib.suppress(Exception):
                beat.service.stop(wait=False)
        supervisor.stop(grace_s, lambda: stop.hurry)
        with contextlib.suppress(Exception):
            if metrics_server is not None:
                metrics_server.stop()
        if beat is not None:
            beat.join(timeout=10)
        lock.release()
        with contextlib.suppress(Exception):
            say("stopped.")
    return code


def _wait_ready(
    system: AutomationSystems, supervisor: Supervisor, stop: _Stop, timeout_s: float
) -> list[str] | None:
    """The node names once every pool's current process answers a ping; None if stopped
    first. A pool that exits while starting is restarted (or a crash loop raised) as after
    start-up, and is not ready again until its new process answers."""
    from workers import cpu, memory, storage

    nodes = {p.POOL.name: p.POOL.nodename(system.settings) for p in (cpu, memory, storage)}
    deadline = time.monotonic() + timeout_s
    answered: dict[str, int] = {}  # pool -> pid of the process that answered
    while not stop.requested:
        supervisor.check()
        current = {pool: proc.pid for pool in nodes if (proc := supervisor.process(pool))}
        missing = sorted(
            n for p, n in nodes.items() if p not in current or answered.get(p) != current[p]
        )
        if not missing:
            return list(nodes.values())
        # only the missing, and no longer than their replies take (a plain ping waits out
        # its whole timeout)
        ping = system.app.control.ping(destination=missing, limit=len(missing), timeout=0.5)
        replies = {node for reply in ping or [] for node in reply}
        for pool, node in nodes.items():
            if node in replies and pool in current:
                answered[pool] = current[pool]
        if time.monotonic() > deadline:
            raise TdautoError(
                f"workers not ready after {timeout_s:g}s: missing {missing}"
                f"; see their logs in {system.settings.data_path / 'logs' / 'processes'}"
            )
    return None


def _metrics_server(
    system: AutomationSystems, supervisor: Supervisor, no_auth_on_localhost: bool, say: Say
) -> Any:
    """``up``'s /metrics server (with the supervisor's restart counts), or None (port 0, or
    no credentials: a line says why)."""
    from tdauto.monitoring.exposure import HttpServer, credentials
    from tdauto.monitoring.metrics import metrics_app

    s = system.settings
    if not s.metrics_port:
        return None
    try:
        auth = credentials(
            "/metrics",
            "TDAUTO_METRICS",
            s.metrics_user,
            s.metrics_password,
            s.metrics_address,
            no_auth_on_localhost,
            "pass --metrics-no-auth-on-localhost, with TDAUTO_METRICS_ADDRESS on loopback",
        )
    except TdautoError as exc:
        say(f"metrics endpoint off: {exc}")
        return None
    app = metrics_app(system.store, s, auth, restarts=supervisor.restarts)
    server = HttpServer(app, s.metrics_address, s.metrics_port)
    say(f"metrics: http://{s.metrics_address}:{server.port}/metrics")
    return server.start()


class BackgroundPools:
    """The pools of ``AutomationSystems.start()``: supervised as under ``up``, from a thread.

    When another process holds the data dir (a ``tdauto up``), its pools run this system's
    actions; a thread then waits for that lock and starts this system's own pools once it is
    free, so the runs this process schedules are never left without a pool. Only the process
    that started them stops them: a forked child (``os.fork``, a preloading server) that
    inherited this object leaves them alone."""

    def __init__(self, settings: Settings, retry_s: float = 2.0) -> None:
        self._settings = settings
        self._lock = UpLock(settings.data_path)
        self._owner = os.getpid()
        self._retry_s = retry_s
        self._end = threading.Event()
        self._waiter: threading.Thread | None = None
        self.supervisor: Supervisor | None = None

    def start(self) -> None:
        try:
            left = self._lock.acquire()
        except AlreadyRunning as exc:
            log.warning("%s: its pools run this system's actions until it stops", exc)
            self._waiter = threading.Thread(target=self._take_over, daemon=True)
            self._waiter.start()
            return
        self._run(left)

    def _run(self, left: list[int]) -> None:
        if left:
            log.warning("killed pool process(es) a killed tdauto up left running: %s", left)
        self.supervisor = Supervisor(pool_spawns(self._settings), lock=self._lock)
        self.supervisor.start()
        self.supervisor.run_in_thread()

    def _take_over(self) -> None:
        while not self._end.wait(self._retry_s):
            try:
                left = self._lock.acquire()
            except AlreadyRunning:
                continue
            log.warning("the data dir's other tdauto process stopped: starting the pools here")
            self._run(left)
            return

    def stop(self) -> None:
        if os.getpid() != self._owner:
            return
        self._end.set()
        if self._waiter is not None:
            self._waiter.join()
        if self.supervisor is not None:
            self.supervisor.stop()
        self._lock.release()

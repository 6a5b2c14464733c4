"""``tdauto up``: the whole system on this host, under one supervising process.

It takes the data dir's lock (``tdauto.uplock``: one ``up`` per data dir), starts one pool
process per pool under a :class:`~tdauto.supervisor.Supervisor`, the embedded beat and
/metrics, and waits. Every way out stops every process it started: SIGINT, SIGTERM and
SIGHUP (a second signal skips the grace period), a pool in a crash loop, an error while
starting, and a console that went away (``up | tee log`` whose ``tee`` died with the same
Ctrl-C): output to a broken pipe is dropped (:class:`PipeSafe`), never raised into the
shutdown. The CLI command only parses its options and calls :func:`run_up`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

from tdauto.errors import TdautoError
from tdauto.processes import embedded_beat, pool_spawns
from tdauto.supervisor import CrashLoop, Supervisor
from tdauto.uplock import UpLock

if TYPE_CHECKING:
    from tdauto.api import AutomationSystems

Say = Callable[[Any], None]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class PipeSafe(io.TextIOBase):
    """A text stream that drops its output once the reader is gone (EPIPE, EIO, a closed
    stream): the descriptor is pointed at /dev/null so later writes, by anything in the
    process, and the interpreter's final flush succeed quietly."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._break(exc)
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._break(exc)

    def isatty(self) -> bool:
        return not self.broken and self._stream.isatty()

    def _break(self, exc: BaseException) -> None:
        self.broken = True
        if isinstance(exc, OSError) and exc.errno not in (errno.EPIPE, errno.EIO, None):
            return
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)


def pipe_safe(stream: TextIO) -> IO[str]:
    """``stream`` behind a :class:`PipeSafe`, typed as the file a ``rich`` console takes."""
    return cast(IO[str], PipeSafe(stream))


class _Stop:
    """The stop request of ``up``: set by a signal; a second one also sets ``hurry``."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.hurry = threading.Event()
        self.signal: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            self.hurry.set()
        self.signal = signum
        self.event.set()


def run_up(
    system: AutomationSystems,
    *,
    ready_timeout_s: float,
    metrics_no_auth_on_localhost: bool,
    say: Say,
    warn: Say,
    on_ready: Callable[[], None] = lambda: None,
    grace_s: float = 15.0,
) -> int:
    """Run until stopped; returns the exit code (0 when stopped by a signal, 1 when a pool
    crash-looped). Raises the error that stopped a start-up, after stopping everything."""
    stop = _Stop()
    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    settings = system.settings
    lock = UpLock(settings.data_path)
    left = lock.acquire()
    if left:
        warn(f"stopped {len(left)} pool process(es) a killed tdauto up left running: {left}")
    mode = "local (no server)" if settings.local_mode else f"distributed ({settings.broker_url})"
    say(f"tdauto up: mode {mode}")
    say(f"data dir: {settings.data_path}")
    started = time.monotonic()
    log_dir = settings.data_path / "logs" / "processes"
    supervisor = Supervisor(pool_spawns(settings), lock=lock, say=warn)
    beat = None
    metrics_server = None
    code = 0
    try:
        supervisor.start()
        beat = embedded_beat(system.app)
        beat.start()
        metrics_server = _metrics_server(system, supervisor, metrics_no_auth_on_localhost, say)
        names = _wait_ready(system, supervisor, stop.event, ready_timeout_s)
        if names is not None:
            say(f"ready in {time.monotonic() - started:.1f}s: workers {', '.join(names)}")
            say(f"worker logs: {log_dir}")
            on_ready()
            say("Ctrl-C stops everything.")
        while not stop.event.wait(0.5):
            supervisor.check()
    except CrashLoop as exc:
        warn(f"{exc}; stopping")
        code = 1
    finally:
        with contextlib.suppress(Exception):
            say("stopping…")
        with contextlib.suppress(Exception):
            if metrics_server is not None:
                metrics_server.stop()
        with contextlib.suppress(Exception):
            if beat is not None:
                beat.stop()
        supervisor.stop(grace_s, stop.hurry)
        lock.release()
        with contextlib.suppress(Exception):
            say("stopped.")
    return code


def _wait_ready(
    system: AutomationSystems, supervisor: Supervisor, stop: threading.Event, timeout_s: float
) -> list[str] | None:
    """The node names once every pool answers a ping; None if stopped first. A pool that
    exits while starting is restarted (and a crash loop raised) as after start-up."""
    from workers import cpu, memory, storage

    names = [p.POOL.nodename(system.settings) for p in (cpu, memory, storage)]
    deadline = time.monotonic() + timeout_s
    seen: set[str] = set()
    while not stop.is_set():
        supervisor.check()
        for reply in system.app.control.ping(timeout=0.5) or []:
            seen.update(reply)
        if set(names) <= seen:
            return names
        if time.monotonic() > deadline:
            raise TdautoError(
                f"workers not ready after {timeout_s:g}s: missing {sorted(set(names) - seen)}"
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

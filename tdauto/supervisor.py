"""Keeping the pool processes of ``tdauto up`` and ``AutomationSystems.start()`` running.

Like supervisord, or systemd's ``Restart=always``: a pool is meant to run until its
supervisor stops it, so any exit it did not ask for (a crash, a kill, a remote ``celery
control shutdown``) is logged in one line with its code, counted, and followed by a new
start after a backoff (1 s, 2 s, 4 s, … at most 30 s; back to 1 s once a process has been
healthy for 60 s). A pool that exits 5 times within a minute is a crash loop: it is no longer
restarted and :meth:`Supervisor.check` raises :class:`CrashLoop`, on which ``up`` stops
everything and exits non-zero. A pool that cannot even be started (``fork`` failing under
memory pressure) counts as an exit. Stopping is by process group (each pool runs in its own
session): SIGTERM, Celery's warm shutdown, then SIGKILL after the grace period, or at once
when ``hurry()`` turns true (a second Ctrl-C). A group is signalled while its leader's
zombie still pins the group id, so a signal never reaches a process that reused the pid.
See docs/architecture.md, "Processes".
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tdauto.errors import TdautoError
from tdauto.uplock import UpLock

log = logging.getLogger("tdauto.supervisor")

Spawn = Callable[[], "subprocess.Popen[bytes]"]


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart an exited pool, and when to give up on it."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    healthy_after_s: float = 60.0
    crash_limit: int = 5
    crash_window_s: float = 60.0

    def delay(self, consecutive: int) -> float:
        """The wait before restart number ``consecutive`` (1 for the first) since health."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** max(0, consecutive - 1))


class CrashLoop(TdautoError):
    """A pool exited too often to be restarted again."""

    def __init__(self, pool: str, exits: int, window_s: float, last: str) -> None:
        self.pool = pool
        super().__init__(
            f"pool {pool} exited {exits} times within {window_s:.0f}s (last {last}); "
            f"not restarting it. Its log: logs/processes/worker-{pool}.log"
        )


def describe(code: int | None) -> str:
    """An exit code as a person reads it: ``code 1`` or ``signal SIGKILL``."""
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


@dataclass
class _Pool:
    name: str
    spawn: Spawn
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    consecutive: int = 0
    exits: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    restarts: int = 0
    given_up: bool = False


class Supervisor:
    """Starts, checks, restarts and stops named pool processes.

    ``check`` is called periodically from one thread (``up``'s main loop, or the thread of
    :meth:`run_in_thread`); ``restarts`` may be read from any thread (/metrics)."""

    def __init__(
        self,
        spawns: dict[str, Spawn],
        *,
        lock: UpLock | None = None,
        policy: RestartPolicy | None = None,
        say: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self._pools = {name: _Pool(name, spawn) for name, spawn in spawns.items()}
        self._lock = lock
        self._say = say or log.warning
        self._clock = clock
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._end_thread = threading.Event()

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        """The pool processes running now."""
        return [p.proc for p in self._pools.values() if p.proc is not None]

    def process(self, name: str) -> subprocess.Popen[bytes] | None:
        """The running process of pool ``name`` (None while it waits for a restart)."""
        return self._pools[name].proc

    def restarts(self) -> dict[str, int]:
        """Restarts per pool since start (``tdauto_process_restarts_total{pool}``)."""
        return {p.name: p.restarts for p in self._pools.values()}

    def start(self) -> None:
        """Start every pool; one that cannot be started is retried by :meth:`check`."""
        now = self._clock()
        for pool in self._pools.values():
            failure = self._spawn(pool)
            if failure is not None:
                self._exited(pool, None, failure, now)

    def _spawn(self, pool: _Pool) -> str | None:
        """Start ``pool``'s process; the reason when it could not be started."""
        pool.restart_at = None
        try:
            proc = pool.spawn()
        except OSError as exc:
            return f"{exc.strerror or exc}"
        pool.proc, pool.started = proc, self._clock()
        if self._lock is not None:
            self._lock.record(pool.name, proc.pid)
        return None

    def check(self) -> None:
        """Notice exits, start due restarts; raises :class:`CrashLoop` when a pool gives up."""
        if self._stopping:
            return
        now = self._clock()
        for pool in self._pools.values():
            if pool.given_up:
                continue
            proc = pool.proc
            if proc is not None and _exited(proc):
                _kill_group(proc.pid, signal.SIGKILL)  # what it left, while its id is pinned
                proc.wait()
                self._exited(pool, proc.pid, describe(proc.returncode), now)
            elif proc is None and pool.restart_at is not None and now >= pool.restart_at:
                failure = self._spawn(pool)
                if failure is not None:
                    self._exited(pool, None, failure, now)
                    continue
                pool.restarts += 1
                assert pool.proc is not None
                self._say(f"pool {pool.name} restarted (pid {pool.proc.pid})")

    def _exited(self, pool: _Pool, pid: int | None, how: str, now: float) -> None:
        pool.proc = None
        p = self.policy
        if pid is not None and now - pool.started >= p.healthy_after_s:
            pool.consecutive = 0
        pool.exits.append(now)
        while pool.exits and now - pool.exits[0] > p.crash_window_s:
            pool.exits.popleft()
        if len(pool.exits) >= p.crash_limit:
            pool.given_up = True
            if self._lock is not None:
                self._lock.record(pool.name, None)
            raise CrashLoop(pool.name, len(pool.exits), p.crash_window_s, how)
        pool.consecutive += 1
        delay = p.delay(pool.consecutive)
        pool.restart_at = now + delay
        what = "exited unexpectedly" if pid is not None else "could not be started"
        who = f", pid {pid}" if pid is not None else ""
        self._say(f"pool {pool.name} {what} ({how}{who}); restarting in {delay:g}s")

    def run_in_thread(self, interval_s: float = 0.5) -> None:
        """Run :meth:`check` in a daemon thread (``start()``): a crash loop, or any other
        error, is logged and the other pools go on."""

        def loop() -> None:
            while not self._end_thread.wait(interval_s):
                try:
                    self.check()
                except Exception:
                    log.exception("tdauto supervisor")

        self._thread = threading.Thread(target=loop, name="tdauto-supervisor", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = 15.0, hurry: Callable[[], bool] = lambda: False) -> None:
        """Stop every pool: SIGTERM to each group, SIGKILL to every group once all leaders
        have exited, ``grace_s`` has passed or ``hurry()`` is true; then reap them."""
        self._stopping = True
        self._end_thread.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        procs = self.processes
        for proc in procs:  # the leader only: Celery stops its pool children itself
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = self._clock() + grace_s
        while not all(_exited(p) for p in procs) and self._clock() < deadline and not hurry():
            time.sleep(0.05)
        for proc in procs:  # leaders unreaped: their ids still name only their groups
            _kill_group(proc.pid, signal.SIGKILL)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for pool in self._pools.values():
            pool.proc = None
            if self._lock is not None:
                self._lock.record(pool.name, None)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether ``proc`` has exited, without reaping it (its zombie keeps the pid, and so the
    process group id, from being reused until ``wait``)."""
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return proc.poll() is not None
    return info is not None


def _kill_group(pid: int, sig: int) -> None:
    """Signal a pool's process group; gone already (ESRCH) or not ours (EPERM) is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)

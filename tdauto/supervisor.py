"""Keeping the pool processes of ``tdauto up`` and ``AutomationSystems.start()`` running.

Like systemd's ``Restart=on-failure`` or supervisord: a pool process that exits without being
asked to is started again after a backoff (1 s, 2 s, 4 s, … at most 30 s; back to 1 s once a
process has been healthy for 60 s), each exit logged in one line with its code and counted.
A pool that exits 5 times within a minute is a crash loop: it is no longer restarted and
:meth:`Supervisor.check` raises :class:`CrashLoop`, on which ``up`` stops everything and
exits non-zero. Stopping is by process group (each pool runs in its own session): SIGTERM,
Celery's warm shutdown, then SIGKILL after the grace period, or at once when ``hurry`` is set
(a second Ctrl-C). See docs/architecture.md, "Processes".
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

    def __init__(self, pool: str, exits: int, window_s: float, code: int | None) -> None:
        self.pool = pool
        super().__init__(
            f"pool {pool} exited {exits} times within {window_s:.0f}s (last {describe(code)}); "
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
class _Child:
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
    """Starts, watches, restarts and stops named child processes.

    ``check`` is called periodically from one thread (``up``'s main loop, or the thread of
    :meth:`watch_in_thread`); ``restarts`` may be read from any thread (/metrics)."""

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
        self._children = {name: _Child(name, spawn) for name, spawn in spawns.items()}
        self._lock = lock
        self._say = say or log.warning
        self._clock = clock
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._stop_watch = threading.Event()

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [c.proc for c in self._children.values() if c.proc is not None]

    def process(self, name: str) -> subprocess.Popen[bytes] | None:
        """The running process of pool ``name`` (None while it waits for a restart)."""
        return self._children[name].proc

    def restarts(self) -> dict[str, int]:
        """Restarts per pool since start (``tdauto_process_restarts_total{pool}``)."""
        return {c.name: c.restarts for c in self._children.values()}

    def start(self) -> None:
        for child in self._children.values():
            self._spawn(child)

    def _spawn(self, child: _Child) -> None:
        child.proc = child.spawn()
        child.started = self._clock()
        child.restart_at = None
        if self._lock is not None:
            self._lock.record(child.name, child.proc.pid)

    def check(self) -> None:
        """Notice exits, start due restarts; raises :class:`CrashLoop` when a pool gives up."""
        if self._stopping:
            return
        now = self._clock()
        for child in self._children.values():
            if child.given_up:
                continue
            proc = child.proc
            if proc is not None and proc.poll() is not None:
                self._exited(child, proc, now)
            elif proc is None and child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
                assert child.proc is not None
                self._say(f"pool {child.name} restarted (pid {child.proc.pid})")
            elif proc is not None and now - child.started >= self.policy.healthy_after_s:
                child.consecutive = 0

    def _exited(self, child: _Child, proc: subprocess.Popen[bytes], now: float) -> None:
        _kill_group(proc.pid, signal.SIGKILL)  # whatever its children left running
        child.proc = None
        p = self.policy
        if now - child.started >= p.healthy_after_s:
            child.consecutive = 0
        child.exits.append(now)
        while child.exits and now - child.exits[0] > p.crash_window_s:
            child.exits.popleft()
        if len(child.exits) >= p.crash_limit:
            child.given_up = True
            if self._lock is not None:
                self._lock.record(child.name, None)
            raise CrashLoop(child.name, len(child.exits), p.crash_window_s, proc.returncode)
        child.consecutive += 1
        delay = p.delay(child.consecutive)
        child.restart_at = now + delay
        self._say(
            f"pool {child.name} exited unexpectedly ({describe(proc.returncode)}, pid "
            f"{proc.pid}); restarting in {delay:g}s"
        )

    def watch_in_thread(self, interval_s: float = 0.5) -> None:
        """Run :meth:`check` in a daemon thread (``start()``): a crash loop is logged and
        that pool left stopped while the others go on."""

        def loop() -> None:
            while not self._stop_watch.wait(interval_s):
                try:
                    self.check()
                except CrashLoop as exc:
                    log.error("%s", exc)

        self._thread = threading.Thread(target=loop, name="tdauto-supervisor", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = 15.0, hurry: threading.Event | None = None) -> None:
        """Stop every child: SIGTERM to each group, SIGKILL to the groups still alive after
        ``grace_s`` (or as soon as ``hurry`` is set), then to whatever is left of each."""
        self._stopping = True
        self._stop_watch.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        procs = self.processes
        for proc in procs:
            if proc.poll() is None:
                _kill_group(proc.pid, signal.SIGTERM)
        deadline = self._clock() + grace_s
        while any(p.poll() is None for p in procs):
            if self._clock() >= deadline or (hurry is not None and hurry.is_set()):
                break
            time.sleep(0.05)
        for proc in procs:
            _kill_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for child in self._children.values():
            child.proc = None
            if self._lock is not None:
                self._lock.record(child.name, None)


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)

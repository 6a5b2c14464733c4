"""Running external commands from actions: own process group, output to the action's log
(its head and tail, bounded: ``output.py``), stopped (SIGTERM, then SIGKILL to the whole
group) on cancel or timeout.

An argv list, never a shell string, and only a program its allow-list admits: every command
passes the gate of ``tdauto.actions.programs`` (``programs=``, required) first. Each command
starts in a new session so a stop reaches every process it spawned; the ``ProcessGroup``
registry lets the engine's watchdog stop them even when the handler is blocked elsewhere.
Its environment never holds tdauto's own secret settings (``secrets.child_environment``):
a program an action runs is not tdauto.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tdauto.actions.limits import Limits
from tdauto.actions.output import BoundedOutput, drain
from tdauto.actions.programs import ProgramList, checked_argv
from tdauto.actions.secrets import child_environment
from tdauto.errors import ActionError

if TYPE_CHECKING:
    from tdauto.settings import Settings


@dataclass(frozen=True)
class CommandResult:
    """What a finished command did; ``output`` is the head and tail of its combined stdout and
    stderr, ``dropped`` the bytes of it between them that were not kept."""

    argv: list[str]
    returncode: int
    output: str
    duration_s: float
    dropped: int = 0


class ProcessGroup:
    """The live subprocesses of one action, so they can all be stopped at once."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.discard(proc)

    def stop_all(self, grace_s: float) -> None:
        """SIGTERM every group, then SIGKILL the groups still alive after ``grace_s``."""
        with self._lock:
            procs = list(self._procs)
        stop_groups(procs, grace_s)


def stop_groups(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM the process group of each process still running, SIGKILL the groups that
    outlive ``grace_s``, and finally SIGKILL whatever is left of every group (children that
    outlived their leader). Each process was started with ``start_new_session=True``."""
    for proc in procs:
        if proc.poll() is None:
            _kill_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
        _kill_group(proc, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def run_command(
    argv: Sequence[str],
    *,
    programs: ProgramList,
    settings: Settings | None = None,
    param: str = "argv",
    logger: logging.Logger,
    group: ProcessGroup,
    stop: threading.Event,
    timeout_s: float | None = None,
    kill_grace_s: float = 5.0,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    max_output_bytes: int = 256_000,
    check: bool = True,
    limits: Limits | None = None,
) -> CommandResult:
    """Run ``argv`` once ``programs`` (read from ``settings``) admits it, logging its output
    line by line (its head and tail within ``max_output_bytes``, the rest read and dropped)
    to ``logger``'s ``output`` child; stop it when ``stop`` is set or after ``timeout_s``;
    under ``limits`` (rlimits, see ``limits.py``) when given. Raises ``ActionError`` (kind
    ``not_allowed``, naming ``param``; ``exit``, ``timeout`` or ``cancelled``)."""
    if isinstance(argv, str) or not argv:
        raise ActionError("a command is an argv list such as ['pg_dump', '-Fc', 'db']", "usage")
    args = checked_argv(argv, programs, settings, param=param, env=env)
    env = child_environment(os.environ if env is None else env)  # never tdauto's secrets
    started = time.monotonic()
    proc = subprocess.Popen(
        limits.wrap(args, env, cwd) if limits is not None else args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    group.add(proc)
    # the engine keeps the "output" child out of the worker's own log (engine/logs.py)
    out_log = logger.getChild("output")
    name = Path(args[0]).name
    output = BoundedOutput(max_output_bytes, lambda line: out_log.info("%s: %s", name, line))

    def pump() -> None:
        assert proc.stdout is not None
        drain(proc.stdout, output)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    reason = None
    try:
        while proc.poll() is None:
            if stop.wait(0.1):
                reason = "cancelled"
            elif timeout_s is not None and time.monotonic() - started > timeout_s:
                reason = "timeout"
            if reason:
                group.stop_all(kill_grace_s)
                break
    finally:
        proc.wait()
        group.discard(proc)
        reader.join(timeout=5)
    text = output.finish()
    result = CommandResult(
        args, proc.returncode, text, time.monotonic() - started, dropped=output.dropped
    )
    if reason == "timeout":
        raise ActionError(f"{args[0]} timed out after {timeout_s}s", "timeout")
    if reason == "cancelled":
        raise ActionError(f"{args[0]} stopped: the run was cancelled", "cancelled")
    if check and proc.returncode != 0:
        tail = result.output[-500:]
        raise ActionError(f"{args[0]} exited with {proc.returncode}: {tail}", "exit")
    return result

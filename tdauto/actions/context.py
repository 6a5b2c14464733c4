"""What an action handler gets: its context (ids, logger, cancel token, deadline, paths)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tdauto.actions.limits import Limits, limits_for
from tdauto.actions.process import CommandResult, ProcessGroup, run_command
from tdauto.actions.programs import ProgramList
from tdauto.errors import PathNotAllowed

if TYPE_CHECKING:
    from tdauto.settings import Settings
    from tdauto.store.backend import Store


def confine(path: str | Path, allowed: list[Path], field_name: str = "path") -> Path:
    """Resolve ``path`` and check it lies under one of ``allowed``; raise PathNotAllowed.

    Symlinks are resolved first, so a link inside an allowed directory cannot lead outside.
    """
    resolved = Path(path).expanduser().resolve()
    for root in allowed:
        if not root.is_absolute():
            root = root.expanduser().resolve()
        if resolved == root or resolved.is_relative_to(root):
            return resolved
    raise PathNotAllowed(
        field_name,
        f"{str(path)!r} is outside the allowed paths ({', '.join(str(a) for a in allowed)}); "
        "add its directory to TDAUTO_ALLOWED_PATHS or use a path inside them",
    )


@dataclass
class ActionContext:
    """Passed as ``ctx`` to every handler.

    ``idempotency_key`` is the same on every attempt of this action in this execution, so a
    handler can make a side effect happen once even when its message is delivered twice.
    """

    execution_id: str
    task_id: str
    task_name: str
    index: int
    action_type: str
    attempt: int
    settings: Settings
    store: Store
    logger: logging.Logger
    deadline_ts: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    processes: ProcessGroup = field(default_factory=ProcessGroup)
    memory_percent: float | None = None  # the reservation's memory share; None: read it

    def usage_limits(self) -> Limits:
        """The rlimits of this action's subprocesses, from its reservation (``limits.py``);
        none when ``TDAUTO_SUBPROCESS_LIMITS`` is off."""
        if not self.settings.subprocess_limits:
            return Limits()
        if self.memory_percent is None:
            execution = self.store.get_execution(self.execution_id)
            self.memory_percent = execution.resources.memory if execution is not None else 0.0
        return limits_for(self.memory_percent)

    @property
    def idempotency_key(self) -> str:
        return f"{self.execution_id}:{self.index}"

    @property
    def data_dir(self) -> Path:
        return self.settings.data_path

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline, or None without one."""
        return None if self.deadline_ts is None else self.deadline_ts - time.time()

    def confine(self, path: str | Path, field_name: str = "path") -> Path:
        return confine(path, self.settings.confined_paths, field_name)

    def run(
        self,
        argv: list[str],
        *,
        programs: ProgramList,
        param: str = "argv",
        timeout_s: float | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> CommandResult:
        """Run a command in its own process group, its output in this action's log, under
        the rlimits of this action's reservation; it is stopped (SIGTERM, then SIGKILL to the
        group) on cancel, timeout or the run's deadline. Of its output, the head and tail
        within half of ``TDAUTO_LOG_MAX_BYTES`` are kept (logged and returned), the rest
        drained, so a flood neither fills the disk nor keeps the run from ending.

        ``programs`` is the allow-list it must pass (``tdauto.actions.programs``: ``SHELL``,
        ``UPDATE``, ``CHECKS`` or ``TOOLS``), checked against this worker's settings; a
        refusal is an ``ActionError`` of kind ``not_allowed`` naming ``param``.
        """
        remaining = self.remaining_s()
        limits = [t for t in (timeout_s, remaining) if t is not None]
        return run_command(
            argv,
            programs=programs,
            settings=self.settings,
            param=param,
            logger=self.logger,
            group=self.processes,
            stop=self.cancel_event,
            timeout_s=min(limits) if limits else None,
            kill_grace_s=self.settings.kill_grace_s,
            cwd=cwd,
            env=env,
            check=check,
            limits=self.usage_limits(),
            max_output_bytes=self.settings.log_max_bytes // 2,
        )

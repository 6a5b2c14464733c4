"""``AutomationSystems``: the public facade (design section 1).

It delegates: validation to the models, persistence to the store, timing to ``schedules``,
running to the engine, processes to ``processes``. Async methods run their store calls in a
thread so an event loop stays responsive with a Redis store; ``create_task``, the one called
in bulk, validates on the loop and awaits its single store round trip natively
(``Store.acreate_task``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from celery.beat import Service

from tdauto.app import make_app, runtime_of
from tdauto.apply import Entry, InvalidTasks, Plan, carry_out, make_plan
from tdauto.engine.executions import new_execution
from tdauto.engine.lifecycle import complete
from tdauto.engine.runner import start_new
from tdauto.errors import ExecutionTimeout, InvalidInput, NotFound, ScheduleWarning, StoreError
from tdauto.intake import (
    check_overrides,
    check_run_params,
    checked_schedule_config,
    checked_task,
)
from tdauto.models import (
    Execution,
    ExecutionStatus,
    ProcessType,
    ScheduleConfig,
    ScheduleType,
    Task,
    Trigger,
    utcnow,
)
from tdauto.monitoring.stats import execution_stats, task_stats
from tdauto.private import tighten
from tdauto.processes import embedded_beat
from tdauto.scheduler import compute_next_ts
from tdauto.schedules import preview
from tdauto.settings import Settings
from tdauto.store.backend import Definition, StaleDefinition
from tdauto.up import BackgroundPools

_RUN_STATE = {"id", "created_at", "updated_at", "next_run_at", "last_run_at"}
_NAMES_KEPT = 1024

log = logging.getLogger(__name__)


class AutomationSystems:
    """Create, schedule, run and observe automation tasks, locally or across hosts."""

    def __init__(
        self, broker_url: str | None = None, data_dir: str | Path | None = None, **settings: Any
    ) -> None:
        if broker_url is not None:
            settings["broker_url"] = broker_url
        if data_dir is not None:
            settings["data_dir"] = data_dir
        self.settings = Settings(**settings)
        self.app = make_app(self.settings)
        self._rt = runtime_of(self.app)
        # names triggers were given, and the ids they were found under: a stale one costs a
        # fresh look-up (the store checks the definition), never a wrong run
        self._ids_by_name: dict[str, str] = {}
        self._names_lock = threading.Lock()
        self._beat: Service | None = None
        self._pools: BackgroundPools | None = None

    @property
    def store(self) -> Any:
        return self._rt.store

    # --- tasks ------------------------------------------------------------------------------

    def _checked(self, data: dict[str, Any], warn: bool = True) -> tuple[Task, float | None]:
        """``data`` validated as a Task through ``tdauto.intake`` (limits and values no
        stored record is held to), and its next fire time; a past schedule warns."""
        now, zone = time.time(), self.settings.timezone
        task, next_ts, problems = checked_task(
            data, self._rt.validation_context(), lambda t: compute_next_ts(t, now, zone), now
        )
        for message in problems if warn else []:
            warnings.warn(ScheduleWarning(message), stacklevel=4)
        return task, next_ts

    def _prepare(self, data: dict[str, Any], warn: bool = True) -> tuple[Task, float | None]:
        """The validated task and its first fire time: computation only, no store call (the
        upstream of ``run_after`` is checked by the store, in the same step as the write)."""
        config = data.get("schedule_config")
        if isinstance(config, dict) and config.get("timezone") is None:
            # The zone in force at creation is part of the definition, so changing
            # TDAUTO_TIMEZONE later does not silently move existing tasks.
            data["schedule_config"] = {**config, "timezone": self.settings.timezone}
        return self._checked(data, warn)

    def check_definition(self, definition: Mapping[str, Any]) -> Task:
        """``definition`` validated as ``create_task_from`` would, without storing it (a task
        file's tasks are all checked before the first is created)."""
        task, _ = self._prepare(_definition(definition), warn=False)
        return task

    def apply(self, entries: Sequence[Entry], problems: Sequence[str] = (), **how: bool) -> Plan:
        """``tdauto apply`` (``how``: dry_run, prune[_all], partial; see tdauto/apply.py)."""
        current = self._list_tasks_sync(None, None)
        plan = make_plan(entries, self.check_definition, current, self._rt.registry, problems, how)
        if plan.problems and not how.get("partial"):
            raise InvalidTasks(plan.problems)
        if not how.get("dry_run"):
            carry_out(plan, self.create_task_from, self._update_task_sync, self._delete_task_sync)
        return plan

    def create_task_from(self, definition: Mapping[str, Any]) -> Task:
        """``create_task`` for a definition given as one mapping (a task file's entry)."""
        return self._create_task_sync(_definition(definition))

    def _create_task_sync(self, data: dict[str, Any]) -> Task:
        task, next_ts = self._prepare(data)
        stored, _ = self._rt.store.create_task(task, next_ts)
        return stored

    async def create_task(
        self,
        name: str,
        type: ProcessType | str,
        schedule: ScheduleType | str,
        schedule_config: dict[str, Any] | None = None,
        actions: list[dict[str, Any]] | None = None,
        resources: dict[str, float] | None = None,
        **options: Any,
    ) -> Task:
        """Validate, persist and schedule a task. The identical definition again returns the
        existing task; a different one under a taken name raises ``NameTaken``."""
        data: dict[str, Any] = {
            "name": name,
            "type": type,
            "schedule": schedule,
            "schedule_config": schedule_config or {},
            "actions": actions or [],
            "resources": resources or {},
            **options,
        }
        # Validation and the first fire time are computation (tens of microseconds), done
        # on the loop; the store's one round trip is awaited (Redis) or threaded (files).
        task, next_ts = self._prepare(data)
        stored, _ = await self._rt.store.acreate_task(task, next_ts)
        return stored

    def _remember_name(self, name: str, task_id: str) -> None:
        with self._names_lock:
            if len(self._ids_by_name) >= _NAMES_KEPT:
                self._ids_by_name.pop(next(iter(self._ids_by_name)), None)
            self._ids_by_name[name] = task_id

    def _find(self, id_or_name: str) -> Task:
        store = self._rt.store
        task = store.get_task(id_or_name) or store.get_task_by_name(id_or_name)
        if task is None:
            raise NotFound("task", id_or_name)
        return task

    async def get_task(self, id_or_name: str) -> Task:
        return await asyncio.to_thread(self._find, id_or_name)

    def _list_tasks_sync(self, type: ProcessType | str | None, enabled: bool | None) -> list[Task]:
        wanted = ProcessType(type) if type is not None else None
        return [
            t
            for t in self._rt.store.list_tasks()
            if (wanted is None or t.type is wanted) and (enabled is None or t.enabled is enabled)
        ]

    async def list_tasks(
        self, type: ProcessType | str | None = None, enabled: bool | None = None
    ) -> list[Task]:
        return await asyncio.to_thread(self._list_tasks_sync, type, enabled)

    def _update_task_sync(self, id_or_name: str, changes: dict[str, Any]) -> Task:
        current = self._find(id_or_name)
        bad = set(changes) & _RUN_STATE
        if bad:
            raise InvalidInput(sorted(bad)[0], "is managed by tdauto and cannot be changed")
        data = {**current.model_dump(exclude={"next_run_at", "last_run_at"}), **changes}
        data["updated_at"] = utcnow()
        task, _ = self._checked(data)
        return self._save(task)

    def _save(self, task: Task) -> Task:
        """Write ``task`` (the store moves its run_after link and refuses a missing upstream
        or a loop, in the same step) and reschedule it from now."""
        self._rt.store.save_task(task)
        self._rt.store.set_next_run(
            task.id, compute_next_ts(task, time.time(), self.settings.timezone)
        )
        return self._find(task.id)

    async def update_task(self, id: str, **changes: Any) -> Task:
        """Re-validate with ``changes`` applied and reschedule from now."""
        return await asyncio.to_thread(self._update_task_sync, id, changes)

    def _set_enabled_sync(self, id_or_name: str, enabled: bool) -> Task:
        """Pause or resume without validating the definition again: an allow-list narrowed
        since the task was made must never keep a failing task from being paused."""
        current = self._find(id_or_name)
        return self._save(current.model_copy(update={"enabled": enabled, "updated_at": utcnow()}))

    async def pause_task(self, id: str) -> Task:
        return await asyncio.to_thread(self._set_enabled_sync, id, False)

    async def resume_task(self, id: str) -> Task:
        return await asyncio.to_thread(self._set_enabled_sync, id, True)

    def _delete_task_sync(self, id_or_name: str) -> None:
        task = self._find(id_or_name)
        self._rt.store.delete_task(task.id)
        self._rt.store.set_upstream(task.id, None)

    async def delete_task(self, id: str) -> None:
        await asyncio.to_thread(self._delete_task_sync, id)

    # --- executions -------------------------------------------------------------------------

    def trigger_sync(
        self, id_or_name: str, params: dict[str, Any] | None = None, event: bool = False
    ) -> Execution:
        """Run a task now; ``params`` override action params by action type or index."""
        for fresh in (False, True):
            task_id = self._ids_by_name.get(id_or_name, id_or_name)
            found = self._rt.store.task_definition(task_id, fresh)
            if found is None:  # a name (or no such task): resolved, and read, afresh
                found = Definition(self._find(id_or_name))
                if found.task.id != id_or_name:
                    self._remember_name(id_or_name, found.task.id)
            task, version = found.task, found.version
            check_overrides(params, task, self.settings)
            execution = new_execution(
                task, self._rt.registry, Trigger.EVENT if event else Trigger.MANUAL, params=params
            )
            check_run_params(execution.actions, self._rt.validation_context())
            # admitted, recorded and its first action sent from here: no tdauto.run hop for a
            # run the caller asked for (the beat still sends tdauto.run, to keep ticks short)
            try:
                return start_new(self._rt, execution, task, version)
            except StaleDefinition:
                continue  # edited since this process read it: once more, from the new one
        raise StoreError(f"task {id_or_name} changed twice while it was being triggered")

    async def trigger(self, id: str, params: dict[str, Any] | None = None) -> Execution:
        return await asyncio.to_thread(self.trigger_sync, id, params)

    def get_execution_sync(self, execution_id: str) -> Execution:
        execution = self._rt.store.get_execution(execution_id)
        if execution is None:
            raise NotFound("execution", execution_id)
        return execution

    async def get_execution(self, id: str) -> Execution:
        return await asyncio.to_thread(self.get_execution_sync, id)

    async def list_executions(
        self,
        task_id: str | None = None,
        status: ExecutionStatus | str | None = None,
        limit: int = 50,
    ) -> list[Execution]:
        wanted = ExecutionStatus(status) if status is not None else None
        if task_id is not None:
            task_id = (await self.get_task(task_id)).id
        return await asyncio.to_thread(self._rt.store.list_executions, task_id, wanted, limit)

    def wait_sync(
        self, execution_id: str, timeout: float | None = None, poll_s: float = 0.2
    ) -> Execution:
        """Block until the execution is terminal; ``ExecutionTimeout`` after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            execution = self.get_execution_sync(execution_id)
            if execution.status.terminal:
                return execution
            if deadline is not None and time.monotonic() >= deadline:
                raise ExecutionTimeout(
                    f"execution {execution_id} still {execution.status.value} after {timeout}s"
                )
            time.sleep(poll_s)

    async def wait(self, execution_id: str, timeout: float | None = None) -> Execution:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            execution = await self.get_execution(execution_id)
            if execution.status.terminal:
                return execution
            if deadline is not None and time.monotonic() >= deadline:
                raise ExecutionTimeout(
                    f"execution {execution_id} still {execution.status.value} after {timeout}s"
                )
            await asyncio.sleep(0.2)

    def cancel_sync(self, execution_id: str) -> Execution:
        """End the execution CANCELLED: queued actions will not run, and a running action's
        worker (on any host) stops it within about a second, its subprocesses with SIGTERM
        then SIGKILL to their process group."""
        self.get_execution_sync(execution_id)
        return complete(self._rt, execution_id, ExecutionStatus.CANCELLED, "cancelled by user")

    async def cancel(self, execution_id: str) -> Execution:
        return await asyncio.to_thread(self.cancel_sync, execution_id)

    # --- schedules and stats ----------------------------------------------------------------

    def preview_schedule(
        self,
        schedule: ScheduleType | str,
        schedule_config: dict[str, Any] | ScheduleConfig,
        count: int = 5,
        after: datetime | None = None,
    ) -> list[datetime]:
        """The next ``count`` fire times (aware, UTC); pure computation."""
        if isinstance(schedule_config, Mapping):
            schedule_config = checked_schedule_config(schedule_config, self.settings)
        return preview(
            ScheduleType(schedule),
            schedule_config,
            count,
            after,
            default_tz=self.settings.timezone,
        )

    def get_task_stats(self) -> dict[str, Any]:
        return task_stats(self._rt.store)

    def get_execution_stats(self, since: datetime | None = None) -> dict[str, Any]:
        return execution_stats(self._rt.store, since, self.settings)

    # --- running ----------------------------------------------------------------------------

    def start(self, workers: bool = True) -> None:
        """Run the scheduler (and, with ``workers``, one worker per pool) in the background
        until :meth:`stop` or the end of the process. Returns at once.

        The pools are supervised as under ``tdauto up`` (restarted with backoff when they
        exit; a pool in a crash loop is logged and left stopped). When a ``tdauto up`` already
        holds the data dir, its pools run this system's actions, and this system starts its
        own if that one stops (``tdauto.up.BackgroundPools``). A start that fails halfway
        stops what it started."""
        if self._beat is not None:
            return
        tighten(self.settings.data_path)  # what an earlier tdauto left readable: 0600/0700
        try:
            if workers:
                self._pools = BackgroundPools(self.settings)
                self._pools.start()
            self._beat = embedded_beat(self.app)
            self._beat.start()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the embedded beat and the worker pools this object started: the beat is
        asked first and waited for last, since a tick may wait on a lock a pool holds."""
        beat, self._beat = self._beat, None
        if beat is not None:
            beat.service.stop(wait=False)
        if self._pools is not None:
            self._pools.stop()
            self._pools = None
        if beat is not None and beat.is_alive():
            beat.join(timeout=10)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    @contextlib.contextmanager
    def running(self, workers: bool = True) -> Iterator[AutomationSystems]:
        self.start(workers=workers)
        try:
            yield self
        finally:
            self.stop()


def _definition(definition: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a task definition given as a mapping (the caller's is left as it was)."""
    if not isinstance(definition, Mapping):
        raise InvalidInput("task", "expected a task definition (a mapping of its fields)")
    return dict(definition)

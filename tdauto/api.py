"""``AutomationSystems``: the public facade (design section 1).

It delegates: validation to the models, persistence to the store, timing to ``schedules``,
running to the engine, processes to ``processes``. Async methods run their store calls in a
thread so an event loop stays responsive with a Redis store; ``create_task``, the one called
in bulk, validates on the loop and awaits its single store round trip natively
(``Store.acreate_task``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from celery.beat import Service

from tdauto import datadir, queries
from tdauto.api_hints import WorkerHints
from tdauto.api_running import Running
from tdauto.app import make_app, runtime_of
from tdauto.apply import Entry, InvalidTasks, Plan, carry_out, make_plan
from tdauto.engine.executions import new_execution
from tdauto.engine.lifecycle import complete
from tdauto.engine.runner import start_new
from tdauto.errors import ExecutionTimeout, InvalidInput, ScheduleWarning, StoreError
from tdauto.intake import (
    assign,
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
from tdauto.scheduler import compute_next_ts
from tdauto.schedules import preview
from tdauto.settings import Settings
from tdauto.store.backend import Definition, StaleDefinition
from tdauto.up import BackgroundPools

_RUN_STATE = {"id", "created_at", "updated_at", "next_run_at", "last_run_at"}
_NAMES_KEPT = 1024

log = logging.getLogger(__name__)


class AutomationSystems(WorkerHints, Running):
    """Create, schedule, run and observe automation tasks, locally or across hosts."""

    def __init__(
        self,
        broker_url: str | None = None,
        data_dir: str | Path | None = None,
        *,
        must_exist: bool = False,
        **settings: Any,
    ) -> None:
        """``must_exist``: a reader, which raises ``StoreNotFound`` rather than make a store."""
        if broker_url is not None:
            settings["broker_url"] = broker_url
        if data_dir is not None:
            settings["data_dir"] = data_dir
        self.settings = Settings(**settings)
        if must_exist:
            datadir.require_store(self.settings)
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
            carry_out(plan, self.create_task_from, self.update_task_sync, self._delete_task_sync)
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
        """By id, name or a unique id prefix (``tdauto.store.ids``), as every method here."""
        return queries.find_task(self._rt.store, id_or_name)

    async def get_task(self, id_or_name: str) -> Task:
        return await asyncio.to_thread(self._find, id_or_name)

    def _list_tasks_sync(self, type: ProcessType | str | None, enabled: bool | None) -> list[Task]:
        return queries.list_tasks(self._rt.store, type, enabled)

    async def list_tasks(
        self, type: ProcessType | str | None = None, enabled: bool | None = None
    ) -> list[Task]:
        return await asyncio.to_thread(self._list_tasks_sync, type, enabled)

    def update_task_sync(
        self, id_or_name: str, changes: Mapping[str, Any], assignments: Sequence[str] = ()
    ) -> Task:
        """``update_task`` with ``changes`` (a task file's fields) and then ``assignments``
        (``KEY=VALUE``, dotted keys: ``tdauto.intake.assign``) applied."""
        current = self._find(id_or_name)
        data, touched = assign(
            {**current.model_dump(exclude={"next_run_at", "last_run_at"}), **changes}, assignments
        )
        bad = (set(changes) | touched) & _RUN_STATE
        if bad:
            raise InvalidInput(sorted(bad)[0], "is managed by tdauto and cannot be changed")
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
        return await asyncio.to_thread(self.update_task_sync, id, changes)

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
                if found.task.name == id_or_name:  # not a prefix: it may come to match two
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
        """By id or a unique id prefix (``tdauto.store.ids``)."""
        return queries.get_execution(self._rt.store, execution_id)

    async def get_execution(self, id: str) -> Execution:
        return await asyncio.to_thread(self.get_execution_sync, id)

    async def list_executions(
        self,
        task_id: str | None = None,
        status: ExecutionStatus | str | None = None,
        limit: int = 50,
    ) -> list[Execution]:
        return await asyncio.to_thread(
            queries.list_executions, self._rt.store, task_id, status, limit
        )

    def wait_sync(
        self,
        execution_id: str,
        timeout: float | None = None,
        poll_s: float = 0.2,
        progress: Callable[[Execution], None] | None = None,
    ) -> Execution:
        """Block until the execution is terminal; ``ExecutionTimeout`` after ``timeout`` s.
        ``progress`` is given the record at each poll (``task run --wait``'s status line)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            execution = self.get_execution_sync(execution_id)
            if progress is not None:
                progress(execution)
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
        execution_id = self.get_execution_sync(execution_id).id
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


def _definition(definition: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a task definition given as a mapping (the caller's is left as it was)."""
    if not isinstance(definition, Mapping):
        raise InvalidInput("task", "expected a task definition (a mapping of its fields)")
    return dict(definition)

"""The store protocol: what the scheduler, engine and facade need from persistence.

Two backends implement it: ``files.FileStore`` (local mode, the data-dir layout) and
``redis.RedisStore`` (distributed mode). One parametrized test suite runs against both.
The store imports only ``tdauto.models``; it knows nothing of Celery.

Keeping the user's definition (``Task``) apart from the scheduler's run state (next and last
fire time, the due index) means a beat writing run state never overwrites an edit, and an
edit never resets the schedule by accident.

Times crossing this interface as floats are UTC epoch seconds (``*_ts``).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tdauto.models import Execution, ExecutionStatus, Task
from tdauto.store.effects import Effects, Mutation, Outbox
from tdauto.store.ids import IdPrefixes

SNAPSHOT_FORMAT = "tdauto-store-snapshot/1"


class StaleDefinition(Exception):
    """``create_admitted``: the task's definition changed after the run was made from it."""


@dataclass(frozen=True)
class Definition:
    """A task definition as ``Store.task_definition`` gives it, with the ``version`` a run
    made from it passes to ``Store.create_admitted`` (None: read just now, nothing to check)."""

    task: Task
    version: str | None = None


TimerMode = Literal["any", "new", "existing"]

ROLLUP_TIERS: dict[str, int] = {"m": 60, "h": 3600, "d": 86400}
"""Rollup bucket tiers and their widths in seconds (plus the tier ``all``, unbounded)."""


@dataclass(frozen=True)
class RollupBucket:
    """One time bucket of the monitoring rollups: ``id`` (``"<tier>:<start_ts>"`` or
    ``"all"``), the tier it belongs to (for purging), when it ends (UTC epoch s, None for
    ``all``) and when the backend may drop it by itself (None: only ``purge_rollups`` does)."""

    id: str
    tier: str
    end_ts: float | None = None
    expire_ts: float | None = None


@dataclass
class RollupDelta:
    """What one event adds to the rollups (built by ``tdauto.monitoring.rollups``):
    ``incr`` adds to counters, ``maxima``/``minima`` keep the larger/smaller value of a field,
    in every bucket of ``buckets``; ``latest`` keeps, per field, the value with the newest
    timestamp (``(ts, value)``) in one store-wide table (e.g. a task's last status)."""

    buckets: list[RollupBucket]
    incr: dict[str, float] = field(default_factory=dict)
    maxima: dict[str, float] = field(default_factory=dict)
    minima: dict[str, float] = field(default_factory=dict)
    latest: dict[str, tuple[float, str]] = field(default_factory=dict)

    def add_to(
        self, adds: dict[str, float], highs: dict[str, float], lows: dict[str, float]
    ) -> None:
        """Add this delta's fields to running totals (one dict may serve all three: field
        names say which kind they are)."""
        for name, value in self.incr.items():
            adds[name] = adds.get(name, 0.0) + value
        for name, value in self.maxima.items():
            highs[name] = max(highs.get(name, value), value)
        for name, value in self.minima.items():
            lows[name] = min(lows.get(name, value), value)


class Store(IdPrefixes, abc.ABC):
    """Persistence of tasks, run state, executions and logs."""

    def pushes_messages(self, broker_url: str | None) -> bool:
        """Whether ``create_admitted`` can push messages for a broker at ``broker_url``
        (``outbox``): only a Redis store on that very Redis can."""
        return False

    # --- tasks -------------------------------------------------------------------------------

    @abc.abstractmethod
    def create_task(self, task: Task, next_ts: float | None) -> tuple[Task, bool]:
        """Store ``task`` and put it in the due index at ``next_ts``, atomically.

        Names are unique. If a task of that name exists with the same ``definition()``,
        nothing changes and ``(existing, False)`` is returned; if its definition differs,
        ``errors.NameTaken`` is raised. Otherwise returns ``(task, True)``.

        A ``task.run_after`` is recorded in the same step (as ``set_upstream`` would), and
        its upstream must be a task that exists then, and must not lead back to this name
        through other tasks' upstreams, else ``errors.InvalidInput`` on ``run_after.task`` and
        nothing is written.
        """

    async def acreate_task(self, task: Task, next_ts: float | None) -> tuple[Task, bool]:
        """:meth:`create_task` for an event loop: here in a worker thread; a backend with a
        native async client (Redis) awaits its round trip on the loop instead."""
        return await asyncio.to_thread(self.create_task, task, next_ts)

    @abc.abstractmethod
    def save_task(self, task: Task) -> None:
        """Replace the definition of an existing task (run state untouched), and move its
        ``run_after`` link in the same step.

        Raises ``errors.NotFound`` if it does not exist and ``errors.NameTaken`` if it was
        renamed to a name another task holds. A changed link or name is checked in that step:
        ``errors.InvalidInput`` on ``run_after.task`` if the upstream does not exist or if
        following upstreams from it comes back to this task (a loop that would run forever);
        an unchanged link is never checked again, so pausing a task always saves.
        """

    @abc.abstractmethod
    def get_task(self, task_id: str) -> Task | None:
        """The task with its run state (``next_run_at``, ``last_run_at``) filled in."""

    def task_definition(self, task_id: str, fresh: bool = False) -> Definition | None:
        """The task as defined, without its run state (None in ``next_run_at`` and
        ``last_run_at``): what a trigger needs. A backend may answer from what it read
        before (``fresh`` reads again) and give the definition a ``version``: a run made
        from it passes that to ``create_admitted``, which checks it is still the stored
        one. The task may be shared: read it, never edit it."""
        task = self.get_task(task_id)
        return None if task is None else Definition(task)

    def get_tasks(self, task_ids: list[str]) -> dict[str, Task]:
        """The tasks of ``task_ids`` that exist, by id; a backend may read them in one round
        trip (the scheduler reads every due task of a tick at once)."""
        found = {task_id: self.get_task(task_id) for task_id in task_ids}
        return {task_id: task for task_id, task in found.items() if task is not None}

    @abc.abstractmethod
    def get_task_by_name(self, name: str) -> Task | None: ...

    @abc.abstractmethod
    def list_tasks(self) -> list[Task]:
        """Every task, ordered by name."""

    @abc.abstractmethod
    def delete_task(self, task_id: str) -> bool:
        """Remove the task, its run state and its due entry; its executions stay."""

    # --- run state and due index ----------------------------------------------------------------

    @abc.abstractmethod
    def set_next_run(self, task_id: str, next_ts: float | None) -> None:
        """Record the next fire time and (re)place the task in the due index; ``None`` removes
        it from the index (paused, finished ONCE task, past ``end_date``)."""

    @abc.abstractmethod
    def set_last_run(self, task_id: str, fire_ts: float) -> None: ...

    def set_run(self, task_id: str, last_ts: float, next_ts: float | None) -> None:
        """``set_last_run`` then ``set_next_run``, which a backend may send as one round trip
        (the scheduler calls this for every slot it fires)."""
        self.set_last_run(task_id, last_ts)
        self.set_next_run(task_id, next_ts)

    @abc.abstractmethod
    def due(self, now_ts: float, limit: int = 100) -> list[tuple[str, float]]:
        """Up to ``limit`` ``(task_id, fire_ts)`` pairs with ``fire_ts <= now_ts``, earliest
        first. Cost grows with what is due, not with the number of tasks."""

    @abc.abstractmethod
    def next_due_ts(self) -> float | None:
        """The earliest fire time in the due index (the scheduler sleeps until then)."""

    # --- executions ---------------------------------------------------------------------------

    @abc.abstractmethod
    def create_execution(self, execution: Execution, outbox: Outbox | None = None) -> bool:
        """Store a new execution; ``False`` (and nothing written) if its id exists. A slot's
        execution id derives from the slot, so this is the exactly-once claim of the slot.
        ``outbox``: messages pushed with the record, and only if it is created (only for a
        store whose ``pushes_messages`` is True; others raise ``ValueError``)."""

    @abc.abstractmethod
    def get_execution(self, execution_id: str) -> Execution | None: ...

    @abc.abstractmethod
    def update_execution(
        self, execution_id: str, mutate: Mutation, base: Execution | None = None
    ) -> Execution:
        """Apply ``mutate`` to the stored execution atomically (no lost update when two
        processes update it at once) and return the result. ``errors.NotFound`` if absent.

        The ``Effects`` that ``mutate`` returns are written with the record (the log append
        exactly once, even when a conflict makes ``mutate`` run again) and their read-backs
        filled in.

        ``base``: the object the caller got from this store's last ``update_execution``,
        ``peek_execution`` or ``get_execution`` of this execution, unchanged since, which it
        will not read again (changes made to it before would be taken as stored). A backend may
        then mutate it in place rather than parse the record once more (a long run's record
        is large), and leave it half-changed after a conflict or an error; it must still be
        the record the store last saw, else it is ignored."""

    def peek_execution(self, execution_id: str, hint: str | None = None) -> Execution | None:
        """The record as this process last wrote or read it (or ``hint``, the JSON another
        process wrote, carried by a message), else as stored: possibly stale, so only for a
        decision that ``update_execution`` checks again (a worker about to claim an action
        it may itself have queued)."""
        return self.get_execution(execution_id)

    def written_record(self, execution_id: str) -> str | None:
        """The JSON this process last wrote (or read) for the execution, when the backend keeps it
        (the ``hint`` a message can carry to ``peek_execution`` elsewhere)."""
        return None

    def _apply_effects(self, execution_id: str, effects: Effects) -> None:
        """Effects one call at a time, for a backend with no cheaper way (the file store)."""
        for name, member, due_ts in effects.set_timers:
            self.timer_set(name, member, due_ts)
        for name, member in effects.take_timers:
            self.timer_take(name, member)
        if effects.release is not None:
            self.release(execution_id, *effects.release)
        if effects.log:
            self.append_log(execution_id, effects.log)
        if effects.rollup is not None:
            self.add_rollup(effects.rollup)
        if effects.dependents_of is not None:
            effects.dependents = self.dependents(effects.dependents_of)

    @abc.abstractmethod
    def list_executions(
        self,
        task_id: str | None = None,
        status: ExecutionStatus | None = None,
        limit: int | None = 50,
    ) -> list[Execution]:
        """Executions, newest (``created_at``) first; ``limit=None`` for all."""

    # --- admission (overlap policy and conflict locks) -----------------------------------------

    @abc.abstractmethod
    def admit(
        self, execution_id: str, task_id: str, max_concurrent: int | None, lock: str | None
    ) -> list[str]:
        """Register the execution as active for its task (and ``lock``), atomically, if the
        task has fewer than ``max_concurrent`` active executions (None: no limit) and no other
        execution holds ``lock``. Returns ``[]`` when admitted (also when it already was),
        else the ids of the executions in the way, and registers nothing."""

    @abc.abstractmethod
    def release(self, execution_id: str, task_id: str, lock: str | None) -> None:
        """Forget the execution as active (idempotent)."""

    def create_admitted(
        self,
        execution: Execution,
        max_concurrent: int | None,
        lock: str | None,
        on_admit: Callable[[Execution], None],
        version: str | None = None,
        outbox: Outbox | None = None,
    ) -> tuple[Execution, list[str] | None]:
        """Record a new (PENDING) run and admit it (``admit``) in one step: when admitted it
        is written as ``on_admit`` leaves it (queued, its first action sent) and ``[]`` is
        returned with it; else it is written PENDING, nothing is registered, and the
        blockers are returned. ``(execution, None)`` when the id exists (nothing written).

        ``outbox``: only for a store whose ``pushes_messages`` is True (the Redis store on
        the broker's own Redis); the messages it returns are pushed with the admitted record,
        and only then.

        Raises ``StaleDefinition`` when ``version``, that of the ``task_definition`` the run
        was made from, is no longer the stored one's (nothing written: make it again from a
        fresh one). This default reads afresh every time and gives no versions.

        This default does it in three steps, the record first (an admitted id always has a
        record); the Redis store does it in one script."""
        if outbox is not None:
            raise ValueError(f"{type(self).__name__} cannot push messages (pushes_messages)")
        if not self.create_execution(execution):
            return execution, None
        blockers = self.admit(execution.id, execution.task_id, max_concurrent, lock)
        if blockers:
            return execution, blockers

        def admit(e: Execution) -> None:
            if e.status is ExecutionStatus.PENDING:
                on_admit(e)

        return self.update_execution(execution.id, admit), []

    # --- timers (action leases, delayed retries) -------------------------------------------

    @abc.abstractmethod
    def timer_set(self, name: str, member: str, due_ts: float, only: TimerMode = "any") -> bool:
        """Set ``member``'s due time in the timer set ``name`` (e.g. ``leases``, ``retries``).

        ``only="new"`` writes only if absent and ``only="existing"`` only if present (a lease
        renewal must fail once the reaper took the lease). Returns True when written.
        """

    @abc.abstractmethod
    def timer_due(self, name: str, now_ts: float, limit: int = 100) -> list[tuple[str, float]]:
        """Up to ``limit`` ``(member, due_ts)`` with ``due_ts <= now_ts``, earliest first."""

    @abc.abstractmethod
    def timer_get(self, name: str, member: str) -> float | None:
        """``member``'s due time, or None when it is not in the set."""

    @abc.abstractmethod
    def timer_take(self, name: str, member: str) -> bool:
        """Remove ``member``; True only for the one caller that removed it."""

    # --- dependencies (run_after) -------------------------------------------------------------

    @abc.abstractmethod
    def set_upstream(self, task_id: str, upstream: str | None) -> None:
        """Record that ``task_id`` runs after the task named ``upstream`` (None: after none)."""

    @abc.abstractmethod
    def dependents(self, upstream: str) -> list[str]:
        """Ids of the tasks that run after the task named ``upstream``."""

    # --- resources: load samples and the reservation ledger ------------------------------------

    @abc.abstractmethod
    def put_sample(self, host: str, pool: str, sample: dict[str, Any], ttl_s: float) -> None:
        """Publish a worker's load sample; it disappears ``ttl_s`` after its last publication."""

    @abc.abstractmethod
    def samples(self) -> list[dict[str, Any]]:
        """Every live sample (``host`` and ``pool`` included in each)."""

    @abc.abstractmethod
    def reserve(
        self, host: str, key: str, amounts: dict[str, float], capacity: float = 100.0
    ) -> bool:
        """Reserve ``amounts`` (percent of a host, per resource) on ``host`` under ``key``, only
        if every resource stays within ``capacity``; atomically. True when reserved (also
        when ``key`` already holds a reservation on that host)."""

    @abc.abstractmethod
    def release_reservation(self, key: str) -> bool:
        """Give back the reservation ``key``; True only for the caller that released it."""

    @abc.abstractmethod
    def reservations(self) -> dict[str, dict[str, Any]]:
        """key -> ``{"host", "cpu", "memory", "storage"}`` of every reservation held."""

    # --- resources: the resource manager's weights, decisions and lent pools -------------------

    @abc.abstractmethod
    def put_weights(self, record: dict[str, Any]) -> None:
        """Replace the routing weights (the manager's whole record, JSON-ready)."""

    @abc.abstractmethod
    def weights(self) -> dict[str, Any] | None:
        """The last routing weights written, or None before the manager's first tick."""

    @abc.abstractmethod
    def add_decisions(self, decisions: list[dict[str, Any]], keep: int = 1000) -> None:
        """Record the manager's decisions (oldest first in ``decisions``), keeping the newest
        ``keep`` overall."""

    @abc.abstractmethod
    def decisions(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` decisions, newest first (the metrics exporter reads these)."""

    @abc.abstractmethod
    def spills(self) -> dict[str, dict[str, Any]]:
        """Worker node -> what it was lent to (``{"class", "host", "queues", "since"}``)."""

    @abc.abstractmethod
    def set_spill(self, node: str, spill: dict[str, Any] | None) -> None:
        """Record that ``node`` was lent (``spill``) or given back (None)."""

    # --- logs ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def append_log(self, execution_id: str, text: str) -> None:
        """Append lines to the execution's log (capped in size by the backend)."""

    @abc.abstractmethod
    def read_log(self, execution_id: str) -> str: ...

    # --- monitoring: rollups, histories, cooldowns, retention --------------------------------
    # Implemented beside each backend (``redis_monitoring.py``, ``files_monitoring.py``): the
    # statistics read these instead of every execution, so they stay cheap at any history size.

    @abc.abstractmethod
    def add_rollup(self, delta: RollupDelta) -> None:
        """Apply ``delta`` to each of its buckets and to the ``latest`` table, atomically and
        in one round trip (this runs once per execution end)."""

    @abc.abstractmethod
    def read_rollups(self, bucket_ids: list[str]) -> list[dict[str, float]]:
        """The fields of each bucket, in order (``{}`` for a bucket never written), in one
        round trip."""

    @abc.abstractmethod
    def rollup_latest(self) -> dict[str, tuple[float, str]]:
        """The ``latest`` table: field -> ``(ts, value)``."""

    @abc.abstractmethod
    def purge_rollups(self, cutoffs: dict[str, float]) -> int:
        """Remove the buckets of each tier (``{"m": ts, "h": ts}``) that ended at or before
        its cutoff; returns how many were removed."""

    @abc.abstractmethod
    def count_by_status(self, statuses: list[ExecutionStatus]) -> dict[str, int]:
        """How many executions are in each of ``statuses`` now (for in-flight counts)."""

    @abc.abstractmethod
    def acquire_cooldown(self, key: str, ttl_s: float) -> bool:
        """True (and ``key`` held for ``ttl_s``) unless ``key`` is already held: the one
        caller that wins sends the alert, the others inside the cooldown do not."""

    @abc.abstractmethod
    def append_history(self, kind: str, record: dict[str, Any], keep: int) -> None:
        """Add ``record`` to the history ``kind`` (alerts, host samples, decisions), keeping
        about the newest ``keep``."""

    @abc.abstractmethod
    def history(self, kind: str, limit: int | None = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` records of ``kind``, newest first (None: all)."""

    @abc.abstractmethod
    def purge_history(self, kind: str, before_ts: float) -> int:
        """Remove the records of ``kind`` whose ``ts`` is before ``before_ts``; how many."""

    @abc.abstractmethod
    def purge_executions(self, before_ts: float, limit: int = 10_000) -> list[str]:
        """Remove up to ``limit`` executions that ended (terminal status) and were created
        before ``before_ts``, with their logs and index entries; returns their ids. Executions
        still in flight are never removed, whatever their age."""

    @abc.abstractmethod
    def purge_logs(self, before_ts: float, limit: int = 10_000) -> int:
        """Remove the logs of up to ``limit`` executions created before ``before_ts`` (the
        records stay); returns how many logs were removed."""

    # --- whole-store operations ---------------------------------------------------------------

    @abc.abstractmethod
    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of tasks, run state and executions as one JSON-ready dict
        (``{"format": SNAPSHOT_FORMAT, "tasks": [...], "state": {...}, "executions": [...]}``),
        taken so that no write lands half-way through it."""

    @abc.abstractmethod
    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace tasks, run state and executions with those of ``snapshot``."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise ``errors.StoreError`` if the store cannot be reached."""

    def close(self) -> None:
        """Release connections; the default has none."""

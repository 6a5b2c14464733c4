"""``FileStore``: the store of local mode, plain JSON files under the data dir.

Layout (``data_dir``)::

    tasks/<task_id>.json          definition only (no run state), so an edit never resets it
    executions/<id>.json          one execution record
    logs/<execution_id>.log       the execution's log, capped at ``log_max_bytes``
    state/run_state.json          {task_id: {"next_ts", "last_ts"}} (UTC epoch seconds)
    state/due_index.json          [[fire_ts, task_id], ...] sorted by fire time
    state/waiting.json            [execution ids] of the WAITING runs (see below)
    state/store.lock              lock of tasks, names, run state and the due index
    state/waiting.lock            lock of state/waiting.json (taken last, under a stripe)
    state/locks/exec-NN.lock      16 lock stripes of execution records (by id hash)

Every file is replaced atomically (temp file in the same directory, fsync, ``os.replace``), so
a reader never sees half a record and needs no lock. Writers from several processes on one
host serialize on ``fcntl.flock``: task mutations on the store lock (names are unique across
files, so creating a task must see every other task), execution read-modify-writes on the
stripe of their id (unrelated executions do not wait on each other). ``snapshot`` and
``restore`` take the store lock and then every stripe, in that order; nothing takes them the
other way round, so there is no deadlock. Names are found by scanning ``tasks/``: local mode
holds hundreds of tasks, and a scan cannot drift from the files as a second index could.

``state/waiting.json`` is the one index of executions: every run's end asks whether any run
WAITS (to start it), and answering by a scan read every record of the data dir on every end
(``benchmarks/local_store.py``: 23 ms a run with 2,000 records, growing with them). It may
hold more than the WAITING runs, never fewer: an id is added, under the record's stripe,
before the record is written WAITING, and removed after the record has left WAITING; an id
whose record does not wait (a process died between the two writes) is dropped when counted,
under that record's stripe. It is built by a scan, with every stripe held, when a store
opens a data dir without one (made before it existed) and on ``restore``; while it is missing
the count is unknown (None), so the engine scans as before.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from tdauto.errors import InvalidInput, NameTaken, NotFound, StoreError
from tdauto.models import Execution, ExecutionStatus, Task
from tdauto.private import FILE_MODE, private_dir
from tdauto.store import records, restored
from tdauto.store.backend import Store, TimerMode
from tdauto.store.effects import Mutation, Outbox
from tdauto.store.files_ids import FileIds
from tdauto.store.records import RunState

LOCK_STRIPES = 16
_WAITING = ExecutionStatus.WAITING.value
_DIRS = ("tasks", "executions", "logs", "metrics", "reports", "backups", "state")


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    """Wrap OS errors and unreadable records in ``StoreError`` naming what was being done."""
    try:
        yield
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise StoreError(f"file store: {what} failed: {exc}") from exc


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``. A fresh descriptor per hold, so threads of
    one process exclude each other as well as other processes; closing releases it."""
    fd = -1
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        raise StoreError(f"file store: locking {path} failed: {exc}") from exc
    try:
        yield
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


from tdauto.store.files_monitoring import FileMonitoring  # noqa: E402 - needs the helpers above


class FileStore(FileIds, FileMonitoring, Store):
    """Tasks, run state, executions and logs as files; safe for many processes on one host."""

    def __init__(self, data_dir: Path, log_max_bytes: int = 1_000_000) -> None:
        records.check_log_max_bytes(log_max_bytes)
        self.root = Path(data_dir)
        self.log_max_bytes = log_max_bytes
        self._tasks = self.root / "tasks"
        self._executions = self.root / "executions"
        self._logs = self.root / "logs"
        state = self.root / "state"
        self._run_state_path = state / "run_state.json"
        self._due_path = state / "due_index.json"
        self._active_path = state / "active.json"
        self._timers_path = state / "timers.json"
        self._upstream_path = state / "upstream.json"
        self._samples_path = state / "samples.json"
        self._ledger_path = state / "ledger.json"
        self._weights_path = state / "weights.json"
        self._decisions_path = state / "decisions.json"
        self._spill_path = state / "spill.json"
        self._waiting_path = state / "waiting.json"
        self._waiting_lock = state / "waiting.lock"
        self._lock_path = state / "store.lock"
        self._stripe_paths = [state / "locks" / f"exec-{n:02d}.lock" for n in range(LOCK_STRIPES)]
        with _os_errors(f"creating the data dir {self.root}"):
            for name in (*_DIRS, "state/locks"):
                private_dir(self.root / name)
            if not self._waiting_path.exists():
                with contextlib.ExitStack() as stack:
                    for path in self._stripe_paths:
                        stack.enter_context(_flock(path))
                    self._build_waiting()

    # --- locks and raw files -----------------------------------------------------------------

    def _stripe(self, execution_id: str) -> Path:
        return self._stripe_paths[zlib.crc32(execution_id.encode()) % LOCK_STRIPES]

    @contextlib.contextmanager
    def _lock_all(self) -> Iterator[None]:
        """Store lock, then every stripe: no write of any kind lands while held."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(_flock(self._lock_path))
            for path in self._stripe_paths:
                stack.enter_context(_flock(path))
            yield

    # Ids become file names percent-encoded, so no id (``../x``) can leave its folder.

    def _task_path(self, task_id: str) -> Path:
        return self._tasks / f"{quote(task_id, safe='')}.json"

    def _execution_path(self, execution_id: str) -> Path:
        return self._executions / f"{quote(execution_id, safe='')}.json"

    def _log_path(self, execution_id: str) -> Path:
        return self._logs / f"{quote(execution_id, safe='')}.log"

    def _read_states(self) -> dict[str, RunState]:
        raw = _read_text(self._run_state_path)
        if not raw:
            return {}
        return {
            task_id: {"next_ts": value.get("next_ts"), "last_ts": value.get("last_ts")}
            for task_id, value in json.loads(raw).items()
        }

    def _read_due(self) -> list[list[Any]]:
        raw = _read_text(self._due_path)
        return json.loads(raw) if raw else []

    def _task_records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(task id, stored record) of every task file; files removed meanwhile are skipped."""
        for path in self._tasks.glob("*.json"):
            raw = _read_text(path)
            if raw is not None:
                record = json.loads(raw)
                yield str(record.get("id", path.stem)), record

    # --- the WAITING index (state/waiting.json) -------------------------------------------------

    def _build_waiting(self, replace: bool = False) -> None:
        """Write the index from the records; the caller holds every stripe (no record is
        half-way through an update). One that exists is kept unless ``replace`` (another
        process may have built it meanwhile)."""
        with _flock(self._waiting_lock):
            if self._waiting_path.exists() and not replace:
                return
            ids = []
            for path in self._executions.glob("*.json"):
                raw = _read_text(path)
                data = json.loads(raw) if raw else None
                if data is not None and records.raw_status(data) == _WAITING:
                    ids.append(str(data["id"]))
            _write_atomic(self._waiting_path, json.dumps(sorted(ids)))

    def _mark_waiting(self, execution_id: str, waiting: bool) -> None:
        """Add or remove ``execution_id``; the caller holds its stripe. A missing index stays
        missing (the count is then unknown, never short)."""
        with _flock(self._waiting_lock):
            raw = _read_text(self._waiting_path)
            if raw is None:
                return
            ids: list[str] = json.loads(raw)
            if (execution_id in ids) == waiting:
                return
            if waiting:
                ids.append(execution_id)
            else:
                ids.remove(execution_id)
            _write_atomic(self._waiting_path, json.dumps(ids))

    def _raw_status(self, execution_id: str) -> str | None:
        raw = _read_text(self._execution_path(execution_id))
        return None if raw is None else records.raw_status(json.loads(raw))

    def _count_waiting(self) -> int | None:
        """The WAITING runs (None while the index is missing); an entry whose record does not
        wait is checked again under its stripe, and dropped."""
        raw = _read_text(self._waiting_path)
        if raw is None:
            return None
        count = 0
        for execution_id in json.loads(raw):
            if self._raw_status(execution_id) == _WAITING:
                count += 1
                continue
            with _flock(self._stripe(execution_id)):  # no update of it is half-way now
                if self._raw_status(execution_id) == _WAITING:
                    count += 1
                else:
                    self._mark_waiting(execution_id, False)
        return count

    def _holder_of(self, name: str) -> tuple[str, dict[str, Any]] | None:
        return next((item for item in self._task_records() if item[1].get("name") == name), None)

    def _write_schedule(
        self, states: dict[str, RunState], due: list[list[Any]], task_id: str, next_ts: float | None
    ) -> None:
        """Place ``task_id`` at ``next_ts`` (or nowhere) in the due index and write both files."""
        due[:] = [entry for entry in due if entry[1] != task_id]
        if next_ts is not None:
            bisect.insort(due, [next_ts, task_id])
        _write_atomic(self._run_state_path, json.dumps(states))
        _write_atomic(self._due_path, json.dumps(due))

    # --- tasks --------------------------------------------------------------------------------

    def create_task(self, task: Task, next_ts: float | None) -> tuple[Task, bool]:
        next_ts = records.check_ts("next_ts", next_ts)
        with _os_errors(f"creating task {task.name!r}"), _flock(self._lock_path):
            holder = self._holder_of(task.name)
            if holder is not None:
                existing = records.load_task(holder[1], self._read_states().get(holder[0]))
                if existing.definition() == task.definition():
                    return existing, False
                raise NameTaken(task.name, existing.id)
            path = self._task_path(task.id)
            if path.exists():
                raise InvalidInput("id", f"task id {task.id!r} is taken; leave id unset")
            upstream = records.upstream_of(task)
            if upstream is not None:
                if self._holder_of(upstream) is None:
                    raise records.no_upstream(upstream)
                pairs = self._read_json(self._upstream_path)
                self._check_loop(task, None, pairs)
                pairs[task.id] = upstream
                _write_atomic(self._upstream_path, json.dumps(pairs))
            states = self._read_states()
            states[task.id] = {"next_ts": next_ts, "last_ts": None}
            # Schedule first, definition last: a task that exists is always scheduled; a crash
            # in between leaves at worst a due entry whose get_task() is None.
            self._write_schedule(states, self._read_due(), task.id, next_ts)
            _write_atomic(path, records.task_json(task))
        stored = task.model_copy()
        stored.next_run_at, stored.last_run_at = records.ts_to_dt(next_ts), None
        return stored, True

    def save_task(self, task: Task) -> None:
        with _os_errors(f"saving task {task.id}"), _flock(self._lock_path):
            path = self._task_path(task.id)
            raw = _read_text(path)
            if raw is None:
                raise NotFound("task", task.id)
            holder = self._holder_of(task.name)
            if holder is not None and holder[0] != task.id:
                raise NameTaken(task.name, holder[0])
            pairs = self._read_json(self._upstream_path)
            old_name = json.loads(raw).get("name")
            upstream = records.upstream_of(task)
            if upstream != pairs.get(task.id) or task.name != old_name:
                # the links change: check them; an unchanged one is never re-checked, so a
                # pause of a task whose upstream was deleted still saves
                moved = upstream is not None and upstream not in (pairs.get(task.id), task.name)
                if moved and (upstream == old_name or self._holder_of(str(upstream)) is None):
                    raise records.no_upstream(str(upstream))
                self._check_loop(task, old_name, pairs)
                if upstream is None:
                    pairs.pop(task.id, None)
                else:
                    pairs[task.id] = upstream
                _write_atomic(self._upstream_path, json.dumps(pairs))
            _write_atomic(path, records.task_json(task))

    def _check_loop(self, task: Task, old_name: str | None, pairs: dict[str, str]) -> None:
        """Refuse a ``run_after`` that closes a loop, as the store will be once ``task`` (once
        named ``old_name``) is written; under the store lock."""
        names = {r.get("name"): i for i, r in self._task_records()}
        if old_name is not None and names.get(old_name) == task.id:
            del names[old_name]
        names[task.name] = task.id
        links = {**pairs, task.id: records.upstream_of(task)}
        chain = records.run_after_cycle(
            task.id, task.name, records.upstream_of(task), names.get, links.get, len(names)
        )
        if chain is not None:
            raise records.cycle_error(chain)

    def get_task(self, task_id: str) -> Task | None:
        with _os_errors(f"reading task {task_id}"):
            raw = _read_text(self._task_path(task_id))
            if raw is None:
                return None
            return records.load_task(raw, self._read_states().get(task_id))

    def get_task_by_name(self, name: str) -> Task | None:
        with _os_errors(f"reading task {name!r}"):
            holder = self._holder_of(name)
            if holder is None:
                return None
            return records.load_task(holder[1], self._read_states().get(holder[0]))

    def list_tasks(self) -> list[Task]:
        with _os_errors("listing tasks"):
            states = self._read_states()
            tasks = [records.load_task(r, states.get(i)) for i, r in self._task_records()]
        return sorted(tasks, key=lambda t: (t.name, t.id))

    def delete_task(self, task_id: str) -> bool:
        with _os_errors(f"deleting task {task_id}"), _flock(self._lock_path):
            path = self._task_path(task_id)
            existed = path.exists()
            if existed:
                path.unlink()
            states = self._read_states()
            states.pop(task_id, None)
            self._write_schedule(states, self._read_due(), task_id, None)
        return existed

    # --- run state and due index ----------------------------------------------------------------

    def set_next_run(self, task_id: str, next_ts: float | None) -> None:
        """A task deleted meanwhile is not brought back; only its due entry is removed."""
        next_ts = records.check_ts("next_ts", next_ts)
        with _os_errors(f"scheduling task {task_id}"), _flock(self._lock_path):
            states = self._read_states()
            if not self._task_path(task_id).exists():
                states.pop(task_id, None)
                next_ts = None
            else:
                states.setdefault(task_id, records.empty_state())["next_ts"] = next_ts
            self._write_schedule(states, self._read_due(), task_id, next_ts)

    def set_last_run(self, task_id: str, fire_ts: float) -> None:
        last_ts = records.check_ts("fire_ts", fire_ts)
        with _os_errors(f"recording a run of task {task_id}"), _flock(self._lock_path):
            if not self._task_path(task_id).exists():
                return
            states = self._read_states()
            states.setdefault(task_id, records.empty_state())["last_ts"] = last_ts
            _write_atomic(self._run_state_path, json.dumps(states))

    def due(self, now_ts: float, limit: int = 100) -> list[tuple[str, float]]:
        """Reads the sorted index and bisects it: the file is parsed whole (local mode's
        scale), but only the due prefix is looked at."""
        if limit <= 0:
            return []
        with _os_errors("reading the due index"):
            entries = self._read_due()
        end = bisect.bisect_right(entries, now_ts, key=lambda e: float(e[0]))
        return [(str(task_id), float(ts)) for ts, task_id in entries[: min(end, limit)]]

    def next_due_ts(self) -> float | None:
        with _os_errors("reading the due index"):
            entries = self._read_due()
        return float(entries[0][0]) if entries else None

    # --- executions ---------------------------------------------------------------------------

    def create_execution(self, execution: Execution, outbox: Outbox | None = None) -> bool:
        if outbox is not None:
            raise ValueError("FileStore cannot push messages (pushes_messages)")
        with _os_errors(f"creating execution {execution.id}"), _flock(self._stripe(execution.id)):
            path = self._execution_path(execution.id)
            if path.exists():
                return False
            if execution.status is ExecutionStatus.WAITING:
                self._mark_waiting(execution.id, True)  # before the record: never short
            _write_atomic(path, records.execution_json(execution))
        return True

    def get_execution(self, execution_id: str) -> Execution | None:
        with _os_errors(f"reading execution {execution_id}"):
            raw = _read_text(self._execution_path(execution_id))
            return None if raw is None else records.load_execution(raw)

    def update_execution(
        self, execution_id: str, mutate: Mutation, base: Execution | None = None
    ) -> Execution:
        """``mutate``'s own exceptions pass through unwrapped, and then nothing is written.
        Effects are applied right after the write (the store lock is always taken before a
        stripe lock, never after); ``waiting`` comes from ``state/waiting.json``, which this
        keeps: an id added before a record is written WAITING, removed after it left it."""
        what = f"updating execution {execution_id}"
        path = self._execution_path(execution_id)
        with _flock(self._stripe(execution_id)):
            with _os_errors(what):
                raw = _read_text(path)
            if raw is None:
                raise NotFound("execution", execution_id)
            execution = records.load_execution(raw)
            before = records.identity(execution)
            was_waiting = execution.status is ExecutionStatus.WAITING
            effects = mutate(execution)
            if effects is not None and effects.outbox is not None:
                raise ValueError("FileStore cannot push messages (pushes_messages)")
            records.check_immutable(before, execution)
            waiting = execution.status is ExecutionStatus.WAITING
            with _os_errors(what):
                if waiting and not was_waiting:
                    self._mark_waiting(execution_id, True)
                _write_atomic(path, records.execution_json(execution))
                if was_waiting and not waiting:
                    self._mark_waiting(execution_id, False)
        if effects is not None:
            # after the stripe lock: the store lock is taken before the stripes elsewhere
            self._apply_effects(execution_id, effects)
            if effects.count_waiting:
                with _os_errors("counting the WAITING runs"):
                    effects.waiting = self._count_waiting()
        return execution

    def list_executions(
        self,
        task_id: str | None = None,
        status: ExecutionStatus | None = None,
        limit: int | None = 50,
    ) -> list[Execution]:
        """Scans ``executions/``, filtering on the raw records before validating any."""
        wanted_status = None if status is None else ExecutionStatus(status).value
        found: list[Execution] = []
        with _os_errors("listing executions"):
            for path in self._executions.glob("*.json"):
                raw = _read_text(path)
                if raw is None:
                    continue
                data = json.loads(raw)
                if task_id is not None and data.get("task_id") != task_id:
                    continue
                if wanted_status is not None and records.raw_status(data) != wanted_status:
                    continue
                found.append(records.load_execution(data))
        ordered = records.newest_first(found)
        return ordered if limit is None else ordered[: max(limit, 0)]

    # --- logs ---------------------------------------------------------------------------------

    def _read_active(self) -> dict[str, dict[str, list[str]]]:
        raw = _read_text(self._active_path)
        active = json.loads(raw) if raw else {}
        return {"task": active.get("task", {}), "lock": active.get("lock", {})}

    def admit(
        self, execution_id: str, task_id: str, max_concurrent: int | None, lock: str | None
    ) -> list[str]:
        with _os_errors(f"admitting execution {execution_id}"), _flock(self._lock_path):
            return self._admit_held(execution_id, task_id, max_concurrent, lock)

    def _admit_held(
        self, execution_id: str, task_id: str, max_concurrent: int | None, lock: str | None
    ) -> list[str]:
        """``admit`` with the store lock already held."""
        active = self._read_active()
        running = active["task"].setdefault(task_id, [])
        if execution_id in running:
            return []
        blockers: set[str] = set()
        if max_concurrent is not None and len(running) >= max_concurrent:
            blockers.update(running)
        holders = active["lock"].setdefault(lock, []) if lock else []
        blockers.update(h for h in holders if h != execution_id)
        if blockers:
            return sorted(blockers)
        running.append(execution_id)
        if lock:
            holders.append(execution_id)
        _write_atomic(self._active_path, json.dumps(active))
        return []

    def create_admitted(
        self,
        execution: Execution,
        max_concurrent: int | None,
        lock: str | None,
        on_admit: Callable[[Execution], None],
        version: str | None = None,
        outbox: Outbox | None = None,
    ) -> tuple[Execution, list[str] | None]:
        """The record written once, as ``on_admit`` leaves it, instead of the default's
        PENDING first and then QUEUED: the admission and the write are made under the store
        lock, which every admission takes, so no other admission can find the place taken
        by a run whose record is not there yet (it would release it as stale)."""
        if outbox is not None:
            raise ValueError("FileStore cannot push messages (pushes_messages)")
        path = self._execution_path(execution.id)
        with _os_errors(f"creating execution {execution.id}"), _flock(self._lock_path):
            with _flock(self._stripe(execution.id)):
                if path.exists():
                    return execution, None
            blockers = self._admit_held(execution.id, execution.task_id, max_concurrent, lock)
            if not blockers and execution.status is ExecutionStatus.PENDING:
                on_admit(execution)
            with _flock(self._stripe(execution.id)):
                if path.exists():  # made in between by a create that takes no store lock
                    if not blockers:
                        self._release_held(execution.id, execution.task_id, lock)
                    return execution, None
                _write_atomic(path, records.execution_json(execution))
        return execution, blockers

    def release(self, execution_id: str, task_id: str, lock: str | None) -> None:
        with _os_errors(f"releasing execution {execution_id}"), _flock(self._lock_path):
            self._release_held(execution_id, task_id, lock)

    def _release_held(self, execution_id: str, task_id: str, lock: str | None) -> None:
        """``release`` with the store lock already held."""
        active = self._read_active()
        for group, key in (("task", task_id), ("lock", lock)):
            if key and execution_id in active[group].get(key, []):
                active[group][key].remove(execution_id)
                if not active[group][key]:
                    del active[group][key]
        _write_atomic(self._active_path, json.dumps(active))

    def _read_json(self, path: Path) -> dict[str, Any]:
        raw = _read_text(path)
        return json.loads(raw) if raw else {}

    def timer_set(self, name: str, member: str, due_ts: float, only: TimerMode = "any") -> bool:
        with _os_errors(f"setting timer {name}/{member}"), _flock(self._lock_path):
            timers = self._read_json(self._timers_path)
            group = timers.setdefault(name, {})
            if (only == "new" and member in group) or (only == "existing" and member not in group):
                return False
            group[member] = due_ts
            _write_atomic(self._timers_path, json.dumps(timers))
        return True

    def timer_due(self, name: str, now_ts: float, limit: int = 100) -> list[tuple[str, float]]:
        with _os_errors(f"reading timers {name}"):
            group = self._read_json(self._timers_path).get(name, {})
        due = sorted((ts, m) for m, ts in group.items() if ts <= now_ts)
        return [(m, float(ts)) for ts, m in due[:limit]]

    def timer_get(self, name: str, member: str) -> float | None:
        with _os_errors(f"reading timer {name}/{member}"):
            value = self._read_json(self._timers_path).get(name, {}).get(member)
        return None if value is None else float(value)

    def timer_take(self, name: str, member: str) -> bool:
        with _os_errors(f"taking timer {name}/{member}"), _flock(self._lock_path):
            timers = self._read_json(self._timers_path)
            if member not in timers.get(name, {}):
                return False
            del timers[name][member]
            _write_atomic(self._timers_path, json.dumps(timers))
        return True

    def set_upstream(self, task_id: str, upstream: str | None) -> None:
        with _os_errors(f"recording run_after of {task_id}"), _flock(self._lock_path):
            pairs = self._read_json(self._upstream_path)
            if upstream:
                pairs[task_id] = upstream
            else:
                pairs.pop(task_id, None)
            _write_atomic(self._upstream_path, json.dumps(pairs))

    def dependents(self, upstream: str) -> list[str]:
        with _os_errors("reading run_after dependents"):
            pairs = self._read_json(self._upstream_path)
        return sorted(t for t, name in pairs.items() if name == upstream)

    def put_sample(self, host: str, pool: str, sample: dict[str, Any], ttl_s: float) -> None:
        with _os_errors(f"publishing the sample of {host}/{pool}"), _flock(self._lock_path):
            now = time.time()
            samples = {
                k: v for k, v in self._read_json(self._samples_path).items() if v["expires"] > now
            }
            body = {**sample, "host": host, "pool": pool}
            samples[f"{host}/{pool}"] = {"expires": now + ttl_s, "sample": body}
            _write_atomic(self._samples_path, json.dumps(samples))

    def samples(self) -> list[dict[str, Any]]:
        with _os_errors("reading samples"):
            now = time.time()
            entries = self._read_json(self._samples_path).values()
        return [e["sample"] for e in entries if e["expires"] > now]

    def reserve(
        self, host: str, key: str, amounts: dict[str, float], capacity: float = 100.0
    ) -> bool:
        names = ("cpu", "memory", "storage")
        with _os_errors(f"reserving {key} on {host}"), _flock(self._lock_path):
            ledger = self._read_json(self._ledger_path)
            held = ledger.setdefault("reservations", {})
            if key in held:
                return True
            used = ledger.setdefault("hosts", {}).setdefault(host, {})
            wanted = {n: float(amounts.get(n, 0.0)) for n in names}
            if any(used.get(n, 0.0) + wanted[n] > capacity + 1e-9 for n in names):
                return False
            for n in names:
                used[n] = used.get(n, 0.0) + wanted[n]
            held[key] = {"host": host, **wanted}
            _write_atomic(self._ledger_path, json.dumps(ledger))
        return True

    def release_reservation(self, key: str) -> bool:
        with _os_errors(f"releasing {key}"), _flock(self._lock_path):
            ledger = self._read_json(self._ledger_path)
            held = ledger.get("reservations", {}).pop(key, None)
            if held is None:
                return False
            used = ledger.setdefault("hosts", {}).setdefault(held["host"], {})
            for n in ("cpu", "memory", "storage"):
                used[n] = max(0.0, used.get(n, 0.0) - held[n])
            _write_atomic(self._ledger_path, json.dumps(ledger))
        return True

    def reservations(self) -> dict[str, dict[str, Any]]:
        with _os_errors("reading reservations"):
            held: dict[str, dict[str, Any]] = self._read_json(self._ledger_path).get(
                "reservations", {}
            )
        return held

    def put_weights(self, record: dict[str, Any]) -> None:
        with _os_errors("writing routing weights"):
            _write_atomic(self._weights_path, json.dumps(record))

    def weights(self) -> dict[str, Any] | None:
        with _os_errors("reading routing weights"):
            record = self._read_json(self._weights_path)
        return record or None

    def add_decisions(self, decisions: list[dict[str, Any]], keep: int = 1000) -> None:
        if not decisions:
            return
        with _os_errors("recording decisions"), _flock(self._lock_path):
            raw = _read_text(self._decisions_path)
            held: list[dict[str, Any]] = json.loads(raw) if raw else []
            held = [*reversed(decisions), *held][: max(keep, 1)]
            _write_atomic(self._decisions_path, json.dumps(held))

    def decisions(self, limit: int = 100) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        with _os_errors("reading decisions"):
            raw = _read_text(self._decisions_path)
        held: list[dict[str, Any]] = json.loads(raw) if raw else []
        return held[:limit]

    def spills(self) -> dict[str, dict[str, Any]]:
        with _os_errors("reading lent pools"):
            return self._read_json(self._spill_path)

    def set_spill(self, node: str, spill: dict[str, Any] | None) -> None:
        with _os_errors(f"recording the loan of {node}"), _flock(self._lock_path):
            held = self._read_json(self._spill_path)
            if spill is None:
                held.pop(node, None)
            else:
                held[node] = spill
            _write_atomic(self._spill_path, json.dumps(held))

    def append_log(self, execution_id: str, text: str) -> None:
        """Appends under a ``flock`` of the log file itself; at the cap the log keeps its head
        and ends with ``records.LOG_TRUNCATED_NOTE`` (see ``records.log_piece``)."""
        if not text:
            return
        path = self._log_path(execution_id)
        with _os_errors(f"appending to the log of {execution_id}"):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                piece = records.log_piece(os.fstat(fd).st_size, text.encode(), self.log_max_bytes)
                if piece:
                    os.write(fd, piece)
            finally:
                os.close(fd)

    def read_log(self, execution_id: str) -> str:
        with _os_errors(f"reading the log of {execution_id}"):
            try:
                return self._log_path(execution_id).read_bytes().decode(errors="replace")
            except FileNotFoundError:
                return ""

    # --- whole-store operations ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with _os_errors("taking a snapshot"), self._lock_all():
            tasks = [record for _, record in self._task_records()]
            states = self._read_states()
            executions = []
            for path in self._executions.glob("*.json"):
                raw = _read_text(path)
                if raw is not None:
                    executions.append(json.loads(raw))
        return records.make_snapshot(
            tasks,
            {task["id"]: states.get(task["id"], records.empty_state()) for task in tasks},
            executions,
        )

    def restore(self, snapshot: dict[str, Any]) -> None:
        """In-flight runs come back ended, and no lease, timer, place or reservation of the
        replaced store survives (``tdauto.store.restored``)."""
        tasks, states, executions = restored.restorable(snapshot)
        with _os_errors("restoring a snapshot"), self._lock_all():
            for folder in (self._tasks, self._executions):
                for path in folder.glob("*.json"):
                    path.unlink(missing_ok=True)
            for task in tasks:
                _write_atomic(self._task_path(task.id), records.task_json(task))
            for execution in executions:
                _write_atomic(self._execution_path(execution.id), records.execution_json(execution))
            due = sorted([s["next_ts"], i] for i, s in states.items() if s["next_ts"] is not None)
            _write_atomic(self._run_state_path, json.dumps(states))
            _write_atomic(self._due_path, json.dumps(due))
            _write_atomic(self._active_path, json.dumps({"task": {}, "lock": {}}))
            _write_atomic(self._timers_path, json.dumps({}))
            _write_atomic(self._ledger_path, json.dumps({}))
            _write_atomic(self._upstream_path, json.dumps(restored.upstream_pairs(tasks)))
            self._build_waiting(replace=True)  # from the restored records

    def ping(self) -> None:
        if not (self.root.is_dir() and os.access(self.root, os.W_OK)):
            raise StoreError(
                f"file store: data dir {self.root} is missing or not writable; "
                "check TDAUTO_DATA_DIR and its permissions"
            )

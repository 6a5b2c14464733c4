"""``RedisStore``: the store of distributed mode.

Key layout: ``keys.py``. Every mutation that touches more than one key is one Lua script (the
``*.lua`` files beside this module, first line = signature, keys through ``KEYS``) or one
``MULTI`` transaction, so a crash or a second host never leaves a task without its name or an
execution missing from an index. ``update_execution`` runs the caller's Python ``mutate``, so
it uses optimistic ``WATCH``/``MULTI`` and retries on conflict. redis-py errors surface as
``errors.StoreError``. The client is made in ``__init__`` and connects on first use; nothing
connects at import.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.commands.core import Script
from redis.exceptions import NoScriptError, RedisError, WatchError
from redis.retry import Retry

from tdauto.errors import InvalidInput, NameTaken, NotFound, StoreError
from tdauto.models import Execution, ExecutionStatus, Task
from tdauto.redisconn import Endpoint
from tdauto.store import records, restored
from tdauto.store.backend import Definition, StaleDefinition, Store, TimerMode
from tdauto.store.effects import Effects, Mutation, Outbox
from tdauto.store.journal import journal_entry
from tdauto.store.keys import DEFAULT_PREFIX, Keys
from tdauto.store.records import RunState
from tdauto.store.redis_async import LoopClients, client_factory
from tdauto.store.redis_ids import RedisIds
from tdauto.store.redis_monitoring import FOLD_AT, RedisMonitoring

MAX_WATCH_RETRIES = 1000
_log = logging.getLogger(__name__)
_RECENT_MAX = 1024  # execution records remembered per store for compare-and-set
_DEFINITIONS_MAX = 256  # task definitions remembered per store for triggers
_PARSED_MAX = 64  # parsed records kept for update_execution(base=...)
_PAGE = 200
_SAVE_TRIES = 5  # save_task calls when another save moves the same task's link meanwhile


@cache
def _lua(name: str) -> str:
    return resources.files("tdauto.store").joinpath(f"{name}.lua").read_text(encoding="utf-8")


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


@lru_cache(maxsize=256)
def _parsed_definition(raw: str) -> Task:
    return records.load_task(raw, None)


def _strs(reply: Any) -> list[str]:
    """A reply of members as ``str`` (the client decodes; this tells the type checker)."""
    return [str(member) for member in reply]


def _ts_arg(ts: float | None) -> str:
    """A fire time as Lua receives it: exact decimal text, or "" for none."""
    return "" if ts is None else repr(float(ts))


class RedisStore(RedisIds, RedisMonitoring, Store):
    """Tasks, run state, executions and logs in one Redis database, under one key prefix."""

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        log_max_bytes: int = 1_000_000,
        client: redis.Redis | None = None,
        reconnect_s: float = 30.0,
        sentinel_master: str = "mymaster",
        sentinel_password: str | None = None,
    ) -> None:
        records.check_log_max_bytes(log_max_bytes)
        if client is not None and not client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("RedisStore needs a client made with decode_responses=True")
        self.keys = Keys(prefix)
        self.log_max_bytes = log_max_bytes
        self._owns_client = client is None
        self._url = url if client is None else None
        endpoint = Endpoint(url, sentinel_master, sentinel_password)
        self._where = endpoint.where() if client is None else "the injected client"
        self._r: redis.Redis = client or endpoint.client(
            decode_responses=True,
            # ride out a Redis restart (append-only persistence keeps the data): about
            # reconnect_s of reconnect attempts (backoff capped at 1 s) before a call fails
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=int(reconnect_s)),
            retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
            socket_connect_timeout=2.0,
            socket_keepalive=True,
        )
        self._create_task = self._script("create_task")
        self._save_task = self._script("save_task")
        self._delete_task = self._script("delete_task")
        self._set_run_state = self._script("set_run_state")
        self._create_execution = self._script("create_execution")
        self._append_log = self._script("append_log")
        self._admit = self._script("admit")
        self._create_admitted = self._script("create_admitted")
        self._cas_execution = self._script("cas_execution")
        self._reserve = self._script("reserve")
        self._release_reservation = self._script("release_reservation")
        self._recent: dict[str, str] = {}
        self._recent_lock = threading.Lock()
        self._parsed: dict[str, tuple[str, Execution]] = {}  # id -> (record, its object)
        self._definitions: dict[str, Definition] = {}  # task id -> its last definition read
        # awaitable calls on the caller's loop; an injected client has no URL to copy, so
        # its store's async calls take a worker thread instead
        self._async = (
            LoopClients(client_factory(endpoint, reconnect_s), {"create_task": _lua("create_task")})
            if client is None
            else None
        )

    def _script(self, name: str) -> Script:
        return self._r.register_script(_lua(name))

    # --- tasks --------------------------------------------------------------------------------

    def create_task(self, task: Task, next_ts: float | None) -> tuple[Task, bool]:
        keys, args = self._create_call(task, next_ts)
        with self._driver_errors(f"creating task {task.name!r}"):
            reply = self._create_task(keys=keys, args=args)
        return self._created(task, next_ts, reply)

    async def acreate_task(self, task: Task, next_ts: float | None) -> tuple[Task, bool]:
        """One round trip awaited on the running loop (no worker thread: handing each create
        to a thread and back cost more than the create itself)."""
        if self._async is None:
            return await super().acreate_task(task, next_ts)
        keys, args = self._create_call(task, next_ts)
        with self._driver_errors(f"creating task {task.name!r}"):
            reply = await self._async.script("create_task")(keys=keys, args=args)
        return self._created(task, next_ts, reply)

    def _create_call(self, task: Task, next_ts: float | None) -> tuple[list[str], list[str]]:
        """Keys and args of ``create_task.lua`` (one Lua call: task, name, run state, due
        entry and run_after dependency)."""
        next_ts = records.check_ts("next_ts", next_ts)
        k = self.keys
        upstream = records.upstream_of(task) or ""
        state = json.dumps({"next_ts": next_ts, "last_ts": None})
        keys = [k.tasks, k.task_names, k.task_state, k.due]
        if upstream:
            keys += [k.upstream, k.dependents(upstream)]
        args = [task.id, task.name, records.task_json(task), state, _ts_arg(next_ts), upstream]
        return keys, args

    def _created(self, task: Task, next_ts: float | None, reply: Any) -> tuple[Task, bool]:
        if reply[0] == "exists":
            _, holder_id, holder_json, holder_state = reply
            if not holder_json:
                raise StoreError(f"redis store: name {task.name!r} points to missing task")
            existing = records.load_task(holder_json, records.parse_state(holder_state))
            if existing.definition() == task.definition():
                return existing, False
            raise NameTaken(task.name, holder_id)
        if reply[0] == "id_taken":
            raise InvalidInput("id", f"task id {task.id!r} is taken; leave id unset")
        if reply[0] == "no_upstream":
            raise records.no_upstream(records.upstream_of(task) or "")
        if reply[0] == "loop":
            raise records.cycle_error([str(n) for n in reply[1:]])
        stored = task.model_copy()
        stored.next_run_at, stored.last_run_at = records.ts_to_dt(next_ts), None
        return stored, True

    def save_task(self, task: Task) -> None:
        """One Lua call moves the definition, the name and the run_after link; it names the
        old link's dependents set from a read just before, and says ``retry`` if it moved."""
        k = self.keys
        upstream = records.upstream_of(task) or ""
        for _ in range(_SAVE_TRIES):
            with self._driver_errors(f"saving task {task.id}"):
                old: Any = self._r.hget(k.upstream, task.id)
                old_upstream = str(old) if old else ""
                reply = self._save_task(
                    keys=[
                        k.tasks,
                        k.task_names,
                        k.upstream,
                        k.dependents(old_upstream),
                        k.dependents(upstream),
                    ],
                    args=[task.id, task.name, records.task_json(task), upstream, old_upstream],
                )
            if reply[0] != "retry":
                break
        else:
            raise StoreError(f"task {task.id}: its run_after kept changing while being saved")
        if reply[0] == "not_found":
            raise NotFound("task", task.id)
        if reply[0] == "name_taken":
            raise NameTaken(task.name, reply[1])
        if reply[0] == "no_upstream":
            raise records.no_upstream(upstream)
        if reply[0] == "loop":
            raise records.cycle_error([str(n) for n in reply[1:]])

    def get_task(self, task_id: str) -> Task | None:
        with self._driver_errors(f"reading task {task_id}"):
            pipe = self._r.pipeline(transaction=True)
            pipe.hget(self.keys.tasks, task_id)
            pipe.hget(self.keys.task_state, task_id)
            raw, state = pipe.execute()
        return None if raw is None else records.load_task(raw, records.parse_state(state))

    def task_definition(self, task_id: str, fresh: bool = False) -> Definition | None:
        """The definition this store last read for the task, else one HGET (parsed once per
        stored JSON), versioned by the SHA-1 of its JSON: no read at all for a task triggered
        again, as ``create_admitted.lua`` compares that SHA-1 with the stored definition's."""
        if not fresh:
            with self._recent_lock:
                known = self._definitions.get(task_id)
            if known is not None:
                return known
        with self._driver_errors(f"reading task {task_id}"):
            raw: Any = self._r.hget(self.keys.tasks, task_id)
        with self._recent_lock:
            if raw is None:
                self._definitions.pop(task_id, None)
                return None
            found = Definition(_parsed_definition(str(raw)), _sha1(str(raw)))
            self._definitions[task_id] = found
            if len(self._definitions) > _DEFINITIONS_MAX:
                self._definitions.pop(next(iter(self._definitions)), None)
        return found

    def get_tasks(self, task_ids: list[str]) -> dict[str, Task]:
        if not task_ids:
            return {}
        with self._driver_errors("reading tasks"):
            pipe = self._r.pipeline(transaction=True)
            pipe.hmget(self.keys.tasks, task_ids)
            pipe.hmget(self.keys.task_state, task_ids)
            raws, states = pipe.execute()
        return {
            task_id: records.load_task(raw, records.parse_state(state))
            for task_id, raw, state in zip(task_ids, raws, states, strict=True)
            if raw is not None
        }

    def get_task_by_name(self, name: str) -> Task | None:
        with self._driver_errors(f"reading task {name!r}"):
            task_id = self._r.hget(self.keys.task_names, name)
        return None if task_id is None else self.get_task(str(task_id))

    def list_tasks(self) -> list[Task]:
        with self._driver_errors("listing tasks"):
            pipe = self._r.pipeline(transaction=True)
            pipe.hgetall(self.keys.tasks)
            pipe.hgetall(self.keys.task_state)
            raw_tasks, raw_states = pipe.execute()
        tasks = [
            records.load_task(raw, records.parse_state(raw_states.get(task_id)))
            for task_id, raw in raw_tasks.items()
        ]
        return sorted(tasks, key=lambda t: (t.name, t.id))

    def delete_task(self, task_id: str) -> bool:
        k = self.keys
        with self._driver_errors(f"deleting task {task_id}"):
            reply = self._delete_task(
                keys=[k.tasks, k.task_names, k.task_state, k.due], args=[task_id]
            )
        return bool(reply)

    # --- run state and due index ----------------------------------------------------------------

    def set_next_run(self, task_id: str, next_ts: float | None) -> None:
        """A task deleted meanwhile is not brought back; only its due entry is removed."""
        self._set_state(task_id, "next_ts", records.check_ts("next_ts", next_ts))

    def set_last_run(self, task_id: str, fire_ts: float) -> None:
        self._set_state(task_id, "last_ts", records.check_ts("fire_ts", fire_ts))

    def set_run(self, task_id: str, last_ts: float, next_ts: float | None) -> None:
        k = self.keys
        last = records.check_ts("fire_ts", last_ts)
        nxt = records.check_ts("next_ts", next_ts)
        with self._driver_errors(f"setting the run state of task {task_id}"):
            pipe = self._r.pipeline(transaction=False)
            for field, ts in (("last_ts", last), ("next_ts", nxt)):
                self._set_run_state(
                    keys=[k.tasks, k.task_state, k.due],
                    args=[task_id, field, _ts_arg(ts)],
                    client=pipe,
                )
            pipe.execute()

    def _set_state(self, task_id: str, field: str, ts: float | None) -> None:
        k = self.keys
        with self._driver_errors(f"setting {field} of task {task_id}"):
            self._set_run_state(
                keys=[k.tasks, k.task_state, k.due], args=[task_id, field, _ts_arg(ts)]
            )

    def due(self, now_ts: float, limit: int = 100) -> list[tuple[str, float]]:
        if limit <= 0:
            return []
        with self._driver_errors("reading the due index"):
            rows: Any = self._r.zrangebyscore(
                self.keys.due, "-inf", now_ts, start=0, num=limit, withscores=True
            )
        return [(str(row[0]), float(row[1])) for row in rows]

    def next_due_ts(self) -> float | None:
        with self._driver_errors("reading the due index"):
            rows: Any = self._r.zrange(self.keys.due, 0, 0, withscores=True)
        return float(rows[0][1]) if rows else None

    # --- executions ---------------------------------------------------------------------------

    def create_execution(self, execution: Execution, outbox: Outbox | None = None) -> bool:
        k = self.keys
        body = records.execution_json(execution)
        pushes = outbox(execution, body) if outbox is not None else []
        with self._driver_errors(f"creating execution {execution.id}"):
            created = self._create_execution(
                keys=[
                    k.execution(execution.id),
                    k.executions,
                    k.task_executions(execution.task_id),
                    k.status_executions(execution.status.value),
                    *(key for key, _ in pushes),
                ],
                args=[
                    body,
                    repr(records.dt_to_ts(execution.created_at)),
                    execution.id,
                    *(payload for _, payload in pushes),
                ],
            )
        if created:
            self._remember(execution.id, body)
        return bool(created)

    def get_execution(self, execution_id: str) -> Execution | None:
        with self._driver_errors(f"reading execution {execution_id}"):
            raw: Any = self._r.get(self.keys.execution(execution_id))
        if raw is None:
            return None
        return self._load(execution_id, raw)

    def _load(self, execution_id: str, raw: str) -> Execution:
        """``raw`` parsed, and remembered with the object (for ``update_execution``'s
        ``base``)."""
        parsed = records.load_execution(raw)
        self._remember(execution_id, raw, parsed)
        return parsed

    def _remember(self, execution_id: str, raw: str, parsed: Execution | None = None) -> None:
        """Keep the last record read or written, so the next update needs no read first,
        and the object it was parsed into or written from, for an update given it as
        ``base`` (no parse then)."""
        with self._recent_lock:
            self._recent[execution_id] = raw
            self._parsed.pop(execution_id, None)
            if parsed is not None:
                self._parsed[execution_id] = (raw, parsed)
                if len(self._parsed) > _PARSED_MAX:  # objects weigh more than their JSON
                    self._parsed.pop(next(iter(self._parsed)), None)
            if len(self._recent) > _RECENT_MAX:
                oldest = next(iter(self._recent))
                self._recent.pop(oldest)
                self._parsed.pop(oldest, None)

    def _parsed_for(self, execution_id: str, raw: str, base: Execution | None) -> Execution:
        """``base`` if it is the object remembered for exactly ``raw`` (taken: used once),
        else ``raw`` parsed."""
        if base is not None:
            with self._recent_lock:
                known = self._parsed.get(execution_id)
                if known is not None and known[0] is raw and known[1] is base:
                    del self._parsed[execution_id]
                    return base
        return records.load_execution(raw)

    def written_record(self, execution_id: str) -> str | None:
        return self._recent.get(execution_id)

    def peek_execution(self, execution_id: str, hint: str | None = None) -> Execution | None:
        if hint is not None:  # a stale hint only costs the claim a retry
            return self._load(execution_id, hint)
        raw = self._recent.get(execution_id)
        if raw is None:
            return self.get_execution(execution_id)
        return self._load(execution_id, raw)

    def update_execution(
        self, execution_id: str, mutate: Mutation, base: Execution | None = None
    ) -> Execution:
        """Optimistic compare-and-set (``cas_execution.lua``) against the record this process
        last saw, with the mutation's ``Effects`` in the same script (its log appended in the
        same pipeline, once); on a conflict ``mutate`` runs again on the current record, so it
        must depend only on the execution it is given. Its own exceptions pass through
        unwrapped."""
        with self._driver_errors(f"updating execution {execution_id}"):
            raw: Any = self._recent.get(execution_id)
            if raw is None:
                raw = self._r.get(self.keys.execution(execution_id))
            logged = False
            for _ in range(MAX_WATCH_RETRIES):
                if raw is None:
                    self._recent.pop(execution_id, None)
                    raise NotFound("execution", execution_id)
                execution = self._parsed_for(execution_id, raw, base)
                base = None  # a retry after a conflict starts from the current record
                before, before_status = records.identity(execution), execution.status
                effects = mutate(execution) or Effects()
                records.check_immutable(before, execution)
                new_raw = records.execution_json(execution)
                pushes = effects.outbox(execution, new_raw) if effects.outbox is not None else []
                keys, args = self._cas_call(
                    str(raw), new_raw, before_status, execution, effects, pushes
                )
                log = effects.log if not logged else ""
                reply = self._write(execution_id, keys, args, log)
                logged = True
                if reply[0] == "ok":
                    self._remember(execution_id, new_raw, execution)
                    if effects.count_waiting:
                        effects.waiting = int(reply[1])
                    if effects.dependents_of is not None:
                        effects.dependents = sorted(reply[3:])
                    if int(reply[2]) >= FOLD_AT:
                        self.fold_quietly()
                    return execution
                raw = reply[1] if reply[0] == "conflict" else None
        raise StoreError(
            f"redis store: execution {execution_id} changed under {MAX_WATCH_RETRIES} attempts "
            "to update it in a row; too many concurrent writers"
        )

    def _write(self, execution_id: str, keys: list[str], args: list[Any], log: str) -> list[str]:
        """One round trip: the compare-and-set alone, or in one MULTI with the log append
        before it. Scripts go by SHA; a server that lost them (a restart) gets them again
        and the parts that failed are redone, so nothing is written twice."""
        if not log:
            return _strs(self._cas_execution(keys=keys, args=args))
        log_args: list[Any] = [log, self.log_max_bytes, records.LOG_TRUNCATED_NOTE]
        pipe = self._r.pipeline(transaction=True)
        pipe.evalsha(self._append_log.sha, 1, self.keys.log(execution_id), *log_args)
        pipe.evalsha(self._cas_execution.sha, len(keys), *keys, *args)
        log_reply, cas_reply = pipe.execute(raise_on_error=False)
        for script, reply in ((self._append_log, log_reply), (self._cas_execution, cas_reply)):
            if isinstance(reply, NoScriptError):
                self._r.script_load(script.script)
        if isinstance(cas_reply, NoScriptError):  # nothing of the record was written: redo
            return self._write(
                execution_id, keys, args, log if isinstance(log_reply, Exception) else ""
            )
        if isinstance(cas_reply, Exception):
            raise cas_reply
        if isinstance(log_reply, Exception):
            try:  # the log failed beside a written record: redo it alone
                self._append_log(keys=[self.keys.log(execution_id)], args=log_args)
            except RedisError as exc:  # a log line must never fail the run
                _log.warning("the log of %s failed: %s", execution_id, exc)
        return _strs(cas_reply)

    def _cas_call(
        self,
        raw: str,
        new_raw: str,
        before_status: ExecutionStatus,
        execution: Execution,
        effects: Effects,
        pushes: list[tuple[str, str]],
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of ``cas_execution.lua`` for one update, its effects and the
        messages to push with it."""
        k = self.keys
        task_id, lock = effects.release or (execution.task_id, None)
        keys = [
            k.execution(execution.id),
            k.status_executions(before_status.value),
            k.status_executions(execution.status.value),
            k.status_executions(ExecutionStatus.WAITING.value),
            k.dependents(effects.dependents_of or execution.task_name),
            k.active_task(task_id),
            k.active_lock(lock) if lock else k.active_task(task_id),
            k.rollup_journal,
        ]
        release = "0" if effects.release is None else ("2" if lock else "1")
        ops: list[Any] = []
        for name, member, due_ts in effects.set_timers:
            keys.append(k.timer(name))
            ops += ["set", member, repr(float(due_ts))]
        for name, member in effects.take_timers:
            keys.append(k.timer(name))
            ops += ["take", member, ""]
        args = [
            _sha1(raw),
            new_raw,
            execution.id,
            repr(records.dt_to_ts(execution.created_at)),
            "1" if effects.count_waiting else "0",
            "1" if effects.dependents_of is not None else "0",
            release,
            journal_entry(effects.rollup, execution.id)
            if effects.rollup and effects.rollup.buckets
            else "",
            len(effects.set_timers) + len(effects.take_timers),
            *ops,
            len(pushes),
            *(payload for _, payload in pushes),
        ]
        keys += [key for key, _ in pushes]
        return keys, args

    def list_executions(
        self,
        task_id: str | None = None,
        status: ExecutionStatus | None = None,
        limit: int | None = 50,
    ) -> list[Execution]:
        """Walks the narrowest index newest first, a page at a time, until ``limit`` match."""
        if limit is not None and limit <= 0:
            return []
        status = None if status is None else ExecutionStatus(status)
        if status is not None:
            index = self.keys.status_executions(status.value)
        elif task_id is not None:
            index = self.keys.task_executions(task_id)
        else:
            index = self.keys.executions
        found: list[Execution] = []
        start = 0
        with self._driver_errors("listing executions"):
            while limit is None or len(found) < limit:
                ids = _strs(self._r.zrevrange(index, start, start + _PAGE - 1))
                if not ids:
                    break
                start += len(ids)
                raws: Any = self._r.mget([self.keys.execution(i) for i in ids])
                for raw in raws:
                    if raw is None:
                        continue
                    execution = records.load_execution(raw)
                    if task_id is not None and execution.task_id != task_id:
                        continue
                    if status is not None and execution.status != status:
                        continue  # changed status between the index read and the MGET
                    found.append(execution)
        ordered = records.newest_first(found)
        return ordered if limit is None else ordered[:limit]

    # --- logs ---------------------------------------------------------------------------------

    def admit(
        self, execution_id: str, task_id: str, max_concurrent: int | None, lock: str | None
    ) -> list[str]:
        k = self.keys
        lock_key = k.active_lock(lock) if lock else k.active_task(task_id)
        with self._driver_errors(f"admitting execution {execution_id}"):
            reply = self._admit(
                keys=[k.active_task(task_id), lock_key],
                args=[execution_id, max_concurrent or 0, "1" if lock else "0"],
            )
        return sorted(set(_strs(reply)))

    def pushes_messages(self, broker_url: str | None) -> bool:
        """True for the broker this store was opened on (the same URL: server and db)."""
        return self._url is not None and self._url == broker_url

    def create_admitted(
        self,
        execution: Execution,
        max_concurrent: int | None,
        lock: str | None,
        on_admit: Callable[[Execution], None],
        version: str | None = None,
        outbox: Outbox | None = None,
    ) -> tuple[Execution, list[str] | None]:
        """One script (``create_admitted.lua``), which also checks ``version`` (the SHA-1 of
        the definition the run was made from) and pushes ``outbox``'s messages: 1 round trip
        where the default takes 3, and 4 with the publish. A run that is not admitted is
        then written PENDING."""
        k = self.keys
        pending = records.execution_json(execution)
        on_admit(execution)
        admitted = records.execution_json(execution)
        pushes = outbox(execution, admitted) if outbox is not None else []
        with self._driver_errors(f"creating execution {execution.id}"):
            reply = _strs(
                self._create_admitted(
                    keys=[
                        k.execution(execution.id),
                        k.executions,
                        k.task_executions(execution.task_id),
                        k.status_executions(execution.status.value),
                        k.active_task(execution.task_id),
                        k.active_lock(lock) if lock else k.active_task(execution.task_id),
                        k.tasks,
                        *(key for key, _ in pushes),
                    ],
                    args=[
                        admitted,
                        repr(records.dt_to_ts(execution.created_at)),
                        execution.id,
                        max_concurrent or 0,
                        "1" if lock else "0",
                        execution.task_id,
                        version or "",
                        *(payload for _, payload in pushes),
                    ],
                )
            )
        if reply[0] == "admitted":
            self._remember(execution.id, admitted)
            return execution, []
        if reply[0] == "stale":
            with self._recent_lock:
                self._definitions.pop(execution.task_id, None)
            raise StaleDefinition(execution.task_id)
        before = records.load_execution(pending)
        if reply[0] == "exists" or not self.create_execution(before):
            return before, None
        return before, sorted(set(reply[1:]))

    def release(self, execution_id: str, task_id: str, lock: str | None) -> None:
        with self._driver_errors(f"releasing execution {execution_id}"):
            pipe = self._r.pipeline(transaction=True)
            pipe.srem(self.keys.active_task(task_id), execution_id)
            if lock:
                pipe.srem(self.keys.active_lock(lock), execution_id)
            pipe.execute()

    def timer_set(self, name: str, member: str, due_ts: float, only: TimerMode = "any") -> bool:
        flags = {"new": {"nx": True}, "existing": {"xx": True}}.get(only, {})
        with self._driver_errors(f"setting timer {name}/{member}"):
            changed = self._r.zadd(self.keys.timer(name), {member: due_ts}, ch=True, **flags)
        return only == "any" or bool(changed)

    def timer_due(self, name: str, now_ts: float, limit: int = 100) -> list[tuple[str, float]]:
        with self._driver_errors(f"reading timers {name}"):
            rows: Any = self._r.zrangebyscore(
                self.keys.timer(name), "-inf", now_ts, start=0, num=limit, withscores=True
            )
        return [(str(row[0]), float(row[1])) for row in rows]

    def timer_get(self, name: str, member: str) -> float | None:
        with self._driver_errors(f"reading timer {name}/{member}"):
            score: Any = self._r.zscore(self.keys.timer(name), member)
        return None if score is None else float(score)

    def timer_take(self, name: str, member: str) -> bool:
        with self._driver_errors(f"taking timer {name}/{member}"):
            return bool(self._r.zrem(self.keys.timer(name), member))

    def set_upstream(self, task_id: str, upstream: str | None) -> None:
        """The hash keeps each task's upstream (to move it); a set per upstream name keeps its
        dependents, so a run that ends reads only its own dependents."""
        k = self.keys
        with self._driver_errors(f"recording run_after of {task_id}"):
            old: Any = self._r.hget(k.upstream, task_id)
            pipe = self._r.pipeline(transaction=True)
            if old:
                pipe.srem(k.dependents(str(old)), task_id)
            if upstream:
                pipe.hset(k.upstream, task_id, upstream)
                pipe.sadd(k.dependents(upstream), task_id)
            else:
                pipe.hdel(k.upstream, task_id)
            pipe.execute()

    def dependents(self, upstream: str) -> list[str]:
        with self._driver_errors("reading run_after dependents"):
            members: Any = self._r.smembers(self.keys.dependents(upstream))
        return sorted(str(m) for m in members)

    def put_sample(self, host: str, pool: str, sample: dict[str, Any], ttl_s: float) -> None:
        key = self.keys.sample(host, pool)
        body = json.dumps({**sample, "host": host, "pool": pool})
        with self._driver_errors(f"publishing the sample of {host}/{pool}"):
            pipe = self._r.pipeline(transaction=False)
            pipe.set(key, body, px=int(ttl_s * 1000))
            pipe.zadd(self.keys.samples, {key: time.time() + ttl_s})
            pipe.execute()

    def samples(self) -> list[dict[str, Any]]:
        with self._driver_errors("reading samples"):
            self._r.zremrangebyscore(self.keys.samples, "-inf", time.time())
            keys: Any = self._r.zrange(self.keys.samples, 0, -1)
            raws: Any = self._r.mget(keys) if keys else []
        return [json.loads(raw) for raw in raws if raw]

    def reserve(
        self, host: str, key: str, amounts: dict[str, float], capacity: float = 100.0
    ) -> bool:
        cpu, memory, storage = (float(amounts.get(n, 0.0)) for n in ("cpu", "memory", "storage"))
        body = json.dumps({"host": host, "cpu": cpu, "memory": memory, "storage": storage})
        with self._driver_errors(f"reserving {key} on {host}"):
            ok = self._reserve(
                keys=[self.keys.ledger(host), self.keys.reservations],
                args=[key, body, capacity, cpu, memory, storage],
            )
        return bool(ok)

    def release_reservation(self, key: str) -> bool:
        with self._driver_errors(f"releasing {key}"):
            raw: Any = self._r.hget(self.keys.reservations, key)
            if raw is None:
                return False
            held = json.loads(raw)
            done = self._release_reservation(
                keys=[self.keys.reservations, self.keys.ledger(held["host"])],
                args=[key, held["cpu"], held["memory"], held["storage"]],
            )
        return bool(done)

    def reservations(self) -> dict[str, dict[str, Any]]:
        with self._driver_errors("reading reservations"):
            pairs: Any = self._r.hgetall(self.keys.reservations)
        return {str(k): json.loads(v) for k, v in pairs.items()}

    def put_weights(self, record: dict[str, Any]) -> None:
        with self._driver_errors("writing routing weights"):
            self._r.set(self.keys.weights, json.dumps(record))

    def weights(self) -> dict[str, Any] | None:
        with self._driver_errors("reading routing weights"):
            raw: Any = self._r.get(self.keys.weights)
        return json.loads(raw) if raw else None

    def add_decisions(self, decisions: list[dict[str, Any]], keep: int = 1000) -> None:
        if not decisions:
            return
        with self._driver_errors("recording decisions"):
            pipe = self._r.pipeline(transaction=True)
            pipe.lpush(self.keys.decisions, *(json.dumps(d) for d in decisions))
            pipe.ltrim(self.keys.decisions, 0, max(keep, 1) - 1)
            pipe.execute()

    def decisions(self, limit: int = 100) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        with self._driver_errors("reading decisions"):
            raws: Any = self._r.lrange(self.keys.decisions, 0, limit - 1)
        return [json.loads(raw) for raw in raws]

    def spills(self) -> dict[str, dict[str, Any]]:
        with self._driver_errors("reading lent pools"):
            pairs: Any = self._r.hgetall(self.keys.spill)
        return {str(k): json.loads(v) for k, v in pairs.items()}

    def set_spill(self, node: str, spill: dict[str, Any] | None) -> None:
        with self._driver_errors(f"recording the loan of {node}"):
            if spill is None:
                self._r.hdel(self.keys.spill, node)
            else:
                self._r.hset(self.keys.spill, node, json.dumps(spill))

    def append_log(self, execution_id: str, text: str) -> None:
        """At the cap the log keeps its head and ends with ``records.LOG_TRUNCATED_NOTE``."""
        if not text:
            return
        with self._driver_errors(f"appending to the log of {execution_id}"):
            self._log_to(self._r, execution_id, text)

    def _log_to(self, client: Any, execution_id: str, text: str) -> None:
        self._append_log(
            keys=[self.keys.log(execution_id)],
            args=[text, self.log_max_bytes, records.LOG_TRUNCATED_NOTE],
            client=client,
        )

    def read_log(self, execution_id: str) -> str:
        with self._driver_errors(f"reading the log of {execution_id}"):
            raw: Any = self._r.get(self.keys.log(execution_id))
        return str(raw) if raw else ""

    # --- whole-store operations ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """One ``MULTI`` reads tasks, run state and every execution; ``WATCH`` on the index of
        executions retries it if one is created between listing ids and the ``MULTI``."""
        k = self.keys
        with self._driver_errors("taking a snapshot"), self._r.pipeline() as pipe:
            for _ in range(MAX_WATCH_RETRIES):
                try:
                    pipe.watch(k.executions)
                    ids = _strs(pipe.zrange(k.executions, 0, -1))
                    pipe.multi()
                    pipe.hgetall(k.tasks)
                    pipe.hgetall(k.task_state)
                    if ids:
                        pipe.mget([k.execution(i) for i in ids])
                    replies = pipe.execute()
                    break
                except WatchError:
                    continue
                finally:
                    pipe.reset()
            else:
                raise StoreError("redis store: executions kept changing during a snapshot")
        raw_tasks, raw_states = replies[0], replies[1]
        raw_executions = replies[2] if ids else []
        states: dict[str, RunState] = {
            task_id: records.parse_state(raw_states.get(task_id)) for task_id in raw_tasks
        }
        return records.make_snapshot(
            [json.loads(raw) for raw in raw_tasks.values()],
            states,
            [json.loads(raw) for raw in raw_executions if raw is not None],
        )

    def restore(self, snapshot: dict[str, Any]) -> None:
        """In-flight runs come back ended, and no lease, timer, place or reservation of the
        replaced store survives (``tdauto.store.restored``)."""
        tasks, states, executions = restored.restorable(snapshot)
        k = self.keys
        with self._driver_errors("restoring a snapshot"), self._r.pipeline() as pipe:
            for _ in range(MAX_WATCH_RETRIES):
                try:
                    stale = [k.tasks, k.task_names, k.task_state, k.due, k.executions]
                    stale += [k.status_executions(s.value) for s in ExecutionStatus]
                    stale += [k.upstream, k.reservations]
                    for pattern in k.restore_patterns:
                        stale += _strs(self._r.scan_iter(match=pattern, count=500))
                    pipe.watch(k.executions)
                    stale += [k.execution(i) for i in _strs(pipe.zrange(k.executions, 0, -1))]
                    pipe.multi()
                    pipe.delete(*stale)
                    self._write_restored(pipe, tasks, states, executions)
                    pipe.execute()
                    return
                except WatchError:
                    continue
                finally:
                    pipe.reset()
        raise StoreError("redis store: executions kept changing during a restore")

    def _write_restored(
        self,
        pipe: redis.client.Pipeline,
        tasks: list[Task],
        states: dict[str, RunState],
        executions: list[Execution],
    ) -> None:
        k = self.keys
        if tasks:
            pipe.hset(k.tasks, mapping={t.id: records.task_json(t) for t in tasks})
            pipe.hset(k.task_names, mapping={t.name: t.id for t in tasks})
        if states:
            pipe.hset(k.task_state, mapping={i: json.dumps(s) for i, s in states.items()})
        upstream = restored.upstream_pairs(tasks)
        if upstream:
            pipe.hset(k.upstream, mapping=upstream)
        for task_id, name in upstream.items():
            pipe.sadd(k.dependents(name), task_id)
        due = {i: s["next_ts"] for i, s in states.items() if s["next_ts"] is not None}
        if due:
            pipe.zadd(k.due, due)
        for execution in executions:
            score = records.dt_to_ts(execution.created_at)
            pipe.set(k.execution(execution.id), records.execution_json(execution))
            pipe.zadd(k.executions, {execution.id: score})
            pipe.zadd(k.task_executions(execution.task_id), {execution.id: score})
            pipe.zadd(k.status_executions(execution.status.value), {execution.id: score})

    def ping(self) -> None:
        with self._driver_errors("ping"):
            self._r.ping()

    def close(self) -> None:
        if self._async is not None:
            self._async.drop()
        if self._owns_client:
            with self._driver_errors("closing the connection"):
                self._r.close()

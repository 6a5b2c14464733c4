"""The monitoring part of ``RedisStore``: rollups, histories, cooldowns and retention.

Kept apart from ``redis.py`` so each module holds one concern; ``RedisStore`` mixes it in.
Every write here is one round trip: a rollup is one Lua call (``rollup.lua``) over all of its
buckets, a history append one pipeline. Keys come from ``keys.py``.

Run ends, the most frequent rollup, are not applied one by one: the record's compare-and-set
queues each on the rollup journal (one ``RPUSH`` in the same script), and ``fold_rollups``
adds a few hundred up in Python and applies the sums in one call, when the journal reaches
``FOLD_AT`` and before any read. One end then costs about 1 command instead of ~100 (16
fields in 4 buckets), and the numbers read are never behind.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from tdauto.models import TERMINAL_STATUSES, ExecutionStatus
from tdauto.store import records
from tdauto.store.backend import RollupBucket, RollupDelta
from tdauto.store.journal import readable
from tdauto.store.redis_errors import driver_errors

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

    from tdauto.store.keys import Keys

log = logging.getLogger(__name__)
_PAGE = 500
FOLD_CHUNK = 500
"""Journal entries folded per ``rollup.lua`` call."""
FOLD_ROUNDS = 20
"""Chunks folded at most by one ``fold_rollups`` call."""
FOLD_AT = 200
"""A run end that leaves this many entries on the journal folds it (the writer's cost,
shared by the runs that ended since the last fold)."""
_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)


def _float(value: Any) -> float:
    return float(value)


class RedisMonitoring:
    """Mixed into ``RedisStore``; relies on its client, keys and script loader."""

    keys: Keys
    _r: redis.Redis

    _script: Callable[[str], Script]  # RedisStore's loader of ``<name>.lua``
    _where: str  # the server (or sentinels) for error messages

    def _driver_errors(self, what: str) -> AbstractContextManager[None]:
        return driver_errors(what, self._where)

    def _rollup_script(self) -> Script:
        script: Script | None = getattr(self, "_rollup_lua", None)
        if script is None:
            script = self._script("rollup")
            self._rollup_lua = script
        return script

    def add_rollup(self, delta: RollupDelta) -> None:
        if not delta.buckets:
            return
        keys, args = self._rollup_call([delta])
        with self._driver_errors("recording a rollup"):
            self._rollup_script()(keys=keys, args=args)

    def _rollup_call(
        self, deltas: list[RollupDelta], journal_head: tuple[str, int] | None = None
    ) -> tuple[list[str], list[str]]:
        """KEYS and ARGV of ``rollup.lua`` applying ``deltas`` (the fields of deltas that
        share their buckets added up first); ``journal_head`` = (first entry, count) when
        they are the journal's first ``count`` entries, removed in the same call."""
        k = self.keys
        buckets: dict[str, RollupBucket] = {}
        position: dict[str, int] = {}
        groups: dict[tuple[int, ...], dict[str, Any]] = {}
        latest: dict[str, tuple[float, str]] = {}
        for delta in deltas:
            numbers = []
            for b in delta.buckets:
                seen = buckets.get(b.id)
                if seen is None:
                    position[b.id] = len(position) + 1
                    buckets[b.id] = b
                elif b.expire_ts is not None and (seen.expire_ts or 0) < b.expire_ts:
                    buckets[b.id] = b
                numbers.append(position[b.id])
            group = groups.get(tuple(numbers))
            if group is None:
                group = groups[tuple(numbers)] = {"k": numbers, "i": {}, "mx": {}, "mn": {}}
            delta.add_to(group["i"], group["mx"], group["mn"])
            for name, (ts, text) in delta.latest.items():
                if name not in latest or latest[name][0] <= ts:
                    latest[name] = (ts, text)
        payload = {
            "b": [
                {
                    "end": -1 if b.end_ts is None else b.end_ts,
                    "exp": -1 if b.expire_ts is None else b.expire_ts,
                }
                for b in buckets.values()
            ],
            "g": list(groups.values()),
            "l": {f: [ts, v] for f, (ts, v) in latest.items()},
        }
        keys = [k.rollup_latest]
        keys += [k.rollup(b.id) for b in buckets.values()]
        keys += [k.rollup_index(b.tier) for b in buckets.values()]
        if journal_head is None:
            return keys, [json.dumps(payload)]
        head, count = journal_head
        return [*keys, k.rollup_journal], [json.dumps(payload), head, str(count)]

    def fold_rollups(self) -> int:
        """Fold the run ends queued on the rollup journal into the buckets, ``FOLD_CHUNK``
        at a time, each chunk in one ``rollup.lua`` call that also removes it; returns how
        many were folded. At most ``FOLD_ROUNDS`` chunks a call, so a reader under a steady
        stream of run ends still returns (an empty journal costs one LRANGE)."""
        journal = self.keys.rollup_journal
        folded = 0
        with self._driver_errors("folding the rollup journal"):
            for _ in range(FOLD_ROUNDS):
                raws: Any = self._r.lrange(journal, 0, FOLD_CHUNK - 1)
                if not raws:
                    break
                deltas = [d for d in map(readable, raws) if d is not None]
                keys, args = self._rollup_call(deltas, (raws[0], len(raws)))
                if self._rollup_script()(keys=keys, args=args) == -1:
                    continue  # another process folded them first: read again
                folded += len(raws)
                if len(raws) < FOLD_CHUNK:
                    break  # that was the whole journal
        return folded

    def fold_quietly(self) -> None:
        """``fold_rollups`` where its failure must not fail the caller: after a run's end
        is written (the end stands; the next fold or read takes its entry up), and before a
        read (which then shows the buckets as they are). Logged."""
        try:
            self.fold_rollups()
        except Exception:
            log.warning("could not fold the rollup journal", exc_info=True)

    def read_rollups(self, bucket_ids: list[str]) -> list[dict[str, float]]:
        if not bucket_ids:
            return []
        self.fold_quietly()
        with self._driver_errors("reading rollups"):
            pipe = self._r.pipeline(transaction=False)
            for bucket_id in bucket_ids:
                pipe.hgetall(self.keys.rollup(bucket_id))
            replies = pipe.execute()
        return [{str(f): _float(v) for f, v in reply.items()} for reply in replies]

    def rollup_latest(self) -> dict[str, tuple[float, str]]:
        self.fold_quietly()
        with self._driver_errors("reading rollups"):
            raw: Any = self._r.hgetall(self.keys.rollup_latest)
        result: dict[str, tuple[float, str]] = {}
        for field, value in raw.items():
            ts, _, text = str(value).partition("|")
            result[str(field)] = (float(ts), text)
        return result

    def purge_rollups(self, cutoffs: dict[str, float]) -> int:
        self.fold_quietly()
        removed = 0
        with self._driver_errors("purging rollups"):
            for tier, before in cutoffs.items():
                index = self.keys.rollup_index(tier)
                while True:
                    members: Any = self._r.zrangebyscore(index, "-inf", before, start=0, num=_PAGE)
                    if not members:
                        break
                    pipe = self._r.pipeline(transaction=True)
                    pipe.delete(*members)
                    pipe.zrem(index, *members)
                    deleted, _ = pipe.execute()
                    removed += int(deleted)
        return removed

    def count_by_status(self, statuses: list[ExecutionStatus]) -> dict[str, int]:
        with self._driver_errors("counting executions"):
            pipe = self._r.pipeline(transaction=False)
            for status in statuses:
                pipe.zcard(self.keys.status_executions(ExecutionStatus(status).value))
            counts = pipe.execute()
        return {ExecutionStatus(s).value: int(c) for s, c in zip(statuses, counts, strict=True)}

    def acquire_cooldown(self, key: str, ttl_s: float) -> bool:
        with self._driver_errors(f"taking cooldown {key}"):
            done = self._r.set(self.keys.cooldown(key), "1", nx=True, px=max(1, int(ttl_s * 1000)))
        return bool(done)

    def append_history(self, kind: str, record: dict[str, Any], keep: int) -> None:
        key = self.keys.history(kind)
        with self._driver_errors(f"recording {kind} history"):
            pipe = self._r.pipeline(transaction=True)
            pipe.lpush(key, json.dumps(record, default=str))
            pipe.ltrim(key, 0, max(keep, 1) - 1)
            pipe.execute()

    def history(self, kind: str, limit: int | None = 100) -> list[dict[str, Any]]:
        end = -1 if limit is None else max(limit, 1) - 1
        with self._driver_errors(f"reading {kind} history"):
            raws: Any = self._r.lrange(self.keys.history(kind), 0, end)
        return [json.loads(raw) for raw in raws]

    def purge_history(self, kind: str, before_ts: float) -> int:
        """Records are newest first, so the old ones are a tail: count it a page at a time
        from the end, then cut it with a negative LTRIM (safe against concurrent LPUSHes)."""
        key = self.keys.history(kind)
        old = 0
        with self._driver_errors(f"purging {kind} history"):
            while True:
                page: Any = self._r.lrange(key, -(old + _PAGE), -(old + 1))
                if not page:
                    break
                stale = 0
                for raw in reversed(page):
                    if float(json.loads(raw).get("ts", math.inf)) < before_ts:
                        stale += 1
                    else:
                        break
                old += stale
                if stale < len(page):
                    break
            if old:
                self._r.ltrim(key, 0, -(old + 1))
        return old

    def purge_executions(self, before_ts: float, limit: int = 10_000) -> list[str]:
        """Reads a page of old ids and their records, then deletes the terminal ones in one
        ``MULTI``. A terminal execution never becomes active again, so nothing is lost by
        checking before deleting; active ones are stepped over and stay."""
        k = self.keys
        removed: list[str] = []
        start = 0
        with self._driver_errors("purging executions"):
            while len(removed) < limit:
                ids: Any = self._r.zrangebyscore(
                    k.executions, "-inf", f"({before_ts}", start=start, num=_PAGE
                )
                if not ids:
                    break
                raws: Any = self._r.mget([k.execution(i) for i in ids])
                pipe = self._r.pipeline(transaction=True)
                page_removed = 0
                for execution_id, raw in zip(ids, raws, strict=True):
                    if len(removed) >= limit:
                        break
                    if raw is None:
                        pipe.zrem(k.executions, execution_id)
                        page_removed += 1
                        continue
                    data = json.loads(raw)
                    if records.raw_status(data) not in _TERMINAL:
                        continue
                    pipe.delete(k.execution(execution_id), k.log(execution_id))
                    pipe.zrem(k.executions, execution_id)
                    pipe.zrem(k.task_executions(data["task_id"]), execution_id)
                    pipe.zrem(k.status_executions(data["status"]), execution_id)
                    removed.append(str(execution_id))
                    page_removed += 1
                pipe.execute()
                start += len(ids) - page_removed
        return removed

    def purge_logs(self, before_ts: float, limit: int = 10_000) -> int:
        """Walks the executions created before ``before_ts`` newest first: the logs that
        came of age since the last run are there (older ones went then)."""
        k = self.keys
        removed = 0
        start = 0
        with self._driver_errors("purging logs"):
            while start < limit:
                ids: Any = self._r.zrevrangebyscore(
                    k.executions, f"({before_ts}", "-inf", start=start, num=_PAGE
                )
                if not ids:
                    break
                start += len(ids)
                deleted: Any = self._r.delete(*[k.log(i) for i in ids])
                removed += int(deleted)
        return removed

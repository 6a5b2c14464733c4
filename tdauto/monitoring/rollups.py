"""Rollups: the counters the statistics, ``/metrics`` and alerts read, kept up to date as
things happen instead of recomputed from every record.

One event (an execution reaching a final state, a MISSED or SKIPPED record, a batch of beat
fires, an alert sent, a rebalance decision) becomes one :class:`RollupDelta` applied to four
buckets at once: its minute, its hour, its day and ``all`` (one round trip in Redis). A window
(``since=``) is then read as at most 59 minutes + 23 hours + its days, whatever the number of
executions. Minute buckets live ``MINUTE_KEEP_S``; hours and days until retention removes
them (``TDAUTO_RETENTION_METRICS_DAYS``); ``all`` always.

Field names (flat, ``|``-separated; ``S`` a status, ``B`` a histogram bin label)::

    n                    executions that ended          st|S  tg|<trigger>
    tk|S|<task name>     by task                        ac|S|<action type>  by action
    ed|B ed_n ed_sum ed_max                             run duration (finished runs)
    ad|B|<action> ad_n|<action> ad_sum|<action> ad_max|<action>   action durations
    qw|B|<class> qw_n|<class> qw_sum|<class> qw_max|<class>       time waiting in queue
    cl|<class> busy|<class>                             actions ended, seconds busy, per class
    sl|B sl_n sl_sum sl_max                             start lag of scheduled runs
    fires fl|B fl_n fl_sum fl_max fire_last             beat fires and scheduler lag
    rb|<class>|<action>  rb_last                        rebalance decisions
    al|<rule>                                           alerts sent
    first last                                          first and last event (epoch s)

The ``latest`` table keeps ``task|<name>`` (last end and its status) and ``task_ok|<name>``
(last success) for every task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from tdauto.models import Execution, ExecutionStatus
from tdauto.monitoring.histogram import bin_of
from tdauto.store.backend import ROLLUP_TIERS, RollupBucket, RollupDelta, Store

log = logging.getLogger(__name__)

MINUTE_KEEP_S = 2 * 86400
"""How long minute buckets are kept: windows older than this are read to the hour."""
FINISHED = frozenset({ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT})


def buckets_at(ts: float) -> list[RollupBucket]:
    """The minute, hour and day bucket holding ``ts``, and ``all``."""
    found = []
    now = time.time()  # a bucket of a past time (a replayed history) still gets its keep
    for tier, width in ROLLUP_TIERS.items():
        start = int(ts // width) * width
        expire = max(start + width, now) + MINUTE_KEEP_S if tier == "m" else None
        found.append(RollupBucket(f"{tier}:{start}", tier, float(start + width), expire))
    found.append(RollupBucket("all", "all"))
    return found


def window_ids(since_ts: float | None, now_ts: float) -> list[str]:
    """The fewest bucket ids covering ``[since_ts, now_ts]``: the largest tier aligned at each
    step (a bucket may run past ``now_ts``: it holds nothing later yet). ``since_ts`` is
    rounded down to its minute, or to its hour beyond ``MINUTE_KEEP_S``."""
    if since_ts is None:
        return ["all"]
    widths = sorted(ROLLUP_TIERS.items(), key=lambda kv: -kv[1])
    minute, hour = ROLLUP_TIERS["m"], ROLLUP_TIERS["h"]
    t = int(since_ts // minute) * minute
    if t < now_ts - MINUTE_KEEP_S:
        t = int(t // hour) * hour
    ids = []
    while t <= now_ts:
        tier, width = next((n, w) for n, w in widths if t % w == 0)
        ids.append(f"{tier}:{t}")
        t += width
    return ids


def merge(buckets: Iterable[dict[str, float]]) -> dict[str, float]:
    """Buckets added up: maxima and minima kept as such, the rest summed."""
    total: dict[str, float] = {}
    for bucket in buckets:
        for name, value in bucket.items():
            if name.endswith("_max") or name in ("last", "fire_last", "rb_last"):
                total[name] = max(total.get(name, value), value)
            elif name == "first":
                total[name] = min(total.get(name, value), value)
            else:
                total[name] = total.get(name, 0.0) + value
    return total


class _Delta:
    """Builds a :class:`RollupDelta`: adds, histogram observations, maxima."""

    def __init__(self, ts: float) -> None:
        self.delta = RollupDelta(buckets_at(ts), minima={"first": ts}, maxima={"last": ts})

    def add(self, name: str, value: float = 1.0) -> None:
        self.delta.incr[name] = self.delta.incr.get(name, 0.0) + value

    def high(self, name: str, value: float) -> None:
        self.delta.maxima[name] = max(self.delta.maxima.get(name, value), value)

    def observe(self, prefix: str, seconds: float, suffix: str = "") -> None:
        """One histogram observation: its bin, count, sum and max (``prefix|B[|suffix]``)."""
        tail = f"|{suffix}" if suffix else ""
        seconds = max(0.0, seconds)
        self.add(f"{prefix}|{bin_of(seconds)}{tail}")
        self.add(f"{prefix}_n{tail}")
        self.add(f"{prefix}_sum{tail}", seconds)
        self.high(f"{prefix}_max{tail}", seconds)


def execution_delta(ex: Execution, ts: float | None = None) -> RollupDelta:
    """What ``ex`` (in a final state) adds to the rollups; pure."""
    end = ts if ts is not None else (ex.finished_at.timestamp() if ex.finished_at else time.time())
    d = _Delta(end)
    status = ex.status.value
    d.add("n")
    d.add(f"st|{status}")
    d.add(f"tg|{ex.trigger.value}")
    d.add(f"tk|{status}|{ex.task_name}")
    if ex.status in FINISHED and (duration := ex.duration_s) is not None:
        d.observe("ed", duration)
    if ex.scheduled_for is not None and ex.started_at is not None and ex.status in FINISHED:
        d.observe("sl", (ex.started_at - ex.scheduled_for).total_seconds())
    for run in ex.actions:
        d.add(f"ac|{run.status.value}|{run.type}")
        if run.started_at is None or run.finished_at is None:
            continue
        klass = run.resource_class.value if run.resource_class else "cpu"
        seconds = (run.finished_at - run.started_at).total_seconds()
        d.observe("ad", seconds, run.type)
        d.add(f"cl|{klass}")
        d.add(f"busy|{klass}", max(0.0, seconds))
        if run.sent_at is not None:
            d.observe("qw", (run.started_at - run.sent_at).total_seconds(), klass)
    d.delta.latest[f"task|{ex.task_name}"] = (end, status)
    if ex.status is ExecutionStatus.SUCCEEDED:
        d.delta.latest[f"task_ok|{ex.task_name}"] = (end, status)
    return d.delta


def _apply(store: Store, delta: RollupDelta, what: str) -> None:
    """Monitoring never breaks the work it watches: a failed write is logged, not raised."""
    try:
        store.add_rollup(delta)
    except Exception:
        log.warning("could not record %s in the rollups", what, exc_info=True)


def record_final(store: Store, ex: Execution) -> None:
    """Count ``ex``, which just reached a final state (the engine calls this once per end,
    and the scheduler for each MISSED record)."""
    if not ex.status.terminal:
        return
    _apply(store, execution_delta(ex), f"the end of {ex.id}")


def record_fires(store: Store, lags_s: list[float], now_ts: float | None = None) -> None:
    """Count a batch of beat fires and how late each was sent after its slot (seconds)."""
    if not lags_s:
        return
    now = now_ts if now_ts is not None else time.time()
    d = _Delta(now)
    d.add("fires", len(lags_s))
    for lag in lags_s:
        d.observe("fl", lag)
    d.high("fire_last", now)
    _apply(store, d.delta, "beat fires")


def record_rebalance_decision(store: Store, decision: dict[str, Any], keep: int = 1000) -> None:
    """Count one routing decision (``{"class", "kind", ...}``) and keep it in the
    ``rebalance`` history (for a decision made outside the resource manager)."""
    count_rebalance_decisions(store, [decision])
    try:
        ts = decision.get("ts") or time.time()
        store.append_history("rebalance", {**decision, "ts": ts}, keep)
    except Exception:
        log.warning("could not record a rebalance decision", exc_info=True)


def count_rebalance_decisions(store: Store, decisions: list[dict[str, Any]]) -> None:
    """The resource manager's hook: count a tick's decisions by class and kind (one write).
    The decisions themselves are kept by the manager (``Store.decisions``)."""
    if not decisions:
        return
    now = max(float(d.get("ts") or d.get("at") or time.time()) for d in decisions)
    d = _Delta(now)
    for decision in decisions:
        kind = decision.get("kind") or decision.get("action") or "reweight"
        d.add(f"rb|{decision.get('class', 'any')}|{kind}")
    d.high("rb_last", now)
    _apply(store, d.delta, "rebalance decisions")


def record_alert(store: Store, rule: str, ts: float | None = None) -> None:
    d = _Delta(ts if ts is not None else time.time())
    d.add(f"al|{rule}")
    _apply(store, d.delta, "an alert")


def fields(bucket: dict[str, float], prefix: str, parts: int) -> dict[tuple[str, ...], float]:
    """The fields ``prefix|a|b...`` of ``bucket`` as ``{(a, b, ...): value}``, split into
    ``parts``; the last part keeps any ``|`` it holds (a task name may contain one)."""
    lead = prefix + "|"
    found: dict[tuple[str, ...], float] = {}
    for name, value in bucket.items():
        if name.startswith(lead):
            key = tuple(name[len(lead) :].split("|", parts - 1))
            if len(key) == parts:
                found[key] = value
    return found

"""Optimization actions: ``analyze`` (what the execution history says), ``tune`` (apply its
safe advice, reversibly) and ``monitor`` (a snapshot of tasks, runs, queues and this host).

``analyze`` is a pure function of the records and the time (``analyze_history``), so it can be
tested without a clock. Its recommendations carry a machine-readable ``change``
(``{task_id, field, from, to}``) and a ``safe`` flag; ``tune`` applies only safe changes to
retries (bounded, re-validated, logged in ``<data_dir>/reports/tune-changes.jsonl`` with an id
a later ``tune`` can ``revert``). A pool's size is a setting of the process that runs the
pool, which ``tune`` does not own, so pool advice is recorded, never applied.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tdauto.actions.context import ActionContext, confine
from tdauto.actions.registry import REGISTRY, action
from tdauto.errors import ActionError
from tdauto.models import ActionRun, Execution, ExecutionStatus, ResourceClass, Task, utcnow
from tdauto.settings import Settings
from tdauto.store.backend import Store
from tdauto.units import parse_duration_s

S = ExecutionStatus
DAY_S = 86400.0
FINISHED = (S.SUCCEEDED, S.FAILED, S.TIMED_OUT)
FAILED = (S.FAILED, S.TIMED_OUT)
IN_FLIGHT = (S.PENDING, S.WAITING, S.QUEUED, S.RUNNING, S.RETRYING)
RETRY_BOUNDS = (0, 10)  # what tune may set a retry.max to
RETRY_STEP = 2  # how much one tune raises retries by
RETRY_RECOVERY_MIN = 0.2  # share of retried failures that must recover before more retries help
POOL_BOUNDS = (1, 64)
CONTROL_QUEUE = "tdauto.control"  # the names engine.executions gives its queues
CLASS_QUEUES = tuple(f"tdauto.{c.value}" for c in ResourceClass)
KOMBU_PRIORITY_SEP = "\x06\x16"  # kombu's redis transport: "<queue>\x06\x16<priority>"
CHANGES_FILE = "tune-changes.jsonl"
_FIELD = re.compile(r"^(retry\.max|actions\.(\d+)\.retry\.max|TDAUTO_CONCURRENCY_[A-Z]+)$")


def _pool_field(resource_class: ResourceClass) -> str:
    return f"TDAUTO_CONCURRENCY_{resource_class.value.upper()}"


def pool_sizes(settings: Settings) -> dict[str, int]:
    """``TDAUTO_CONCURRENCY_*`` -> its value, as configured for this process."""
    return {_pool_field(c): int(getattr(settings, f"concurrency_{c.value}")) for c in ResourceClass}


# --- analyze ----------------------------------------------------------------------------------


class AnalyzeParams(BaseModel):
    """Params of ``analyze``.

    - ``since``: the window of history, back from now ("7days", "12h"; default 7 days).
    - ``task``: only this task (name or id); default every task.
    - ``top``: how many of the slowest tasks and actions are listed.
    - ``min_runs``: finished runs a task (or queued actions a pool) needs before it gets
      advice, so one bad night is not a trend.
    - ``failure_alert``: failure rate (0-1) above which a task is flagged.
    - ``timeout_margin``: a p95 duration above this share of a timeout is "near" it.
    - ``queue_wait``: a p95 wait in a queue above this (seconds) means its pool is short.
    """

    model_config = ConfigDict(extra="forbid")

    since: float = Field(default=7 * DAY_S, description="window of history, seconds")
    task: str | None = Field(default=None, min_length=1, description="only this task")
    top: int = Field(default=5, ge=1, le=100)
    min_runs: int = Field(default=5, ge=1, le=100_000)
    failure_alert: float = Field(default=0.5, gt=0, le=1)
    timeout_margin: float = Field(default=0.8, gt=0, le=1)
    queue_wait: float = Field(default=30.0, description="seconds")

    _dur = field_validator("since", "queue_wait", mode="before")(
        classmethod(lambda cls, v: parse_duration_s(v))
    )


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (as ``get_execution_stats``)."""
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]


def summary(values: list[float]) -> dict[str, float] | None:
    """``p50``, ``p95``, ``max`` and ``avg`` in seconds, or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return {
        "p50": round(percentile(ordered, 0.5), 3),
        "p95": round(percentile(ordered, 0.95), 3),
        "max": round(ordered[-1], 3),
        "avg": round(statistics.fmean(ordered), 3),
    }


def linear_trend(points: list[tuple[float, float]]) -> dict[str, Any] | None:
    """Least-squares line through ``(day, seconds)`` points: slope in seconds per day, r².

    None below three points or when every point has the same day. ``r2`` is None when every
    duration is the same (the line fits, but there is no variance to explain).
    """
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 1e-12:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in points)
    syy = sum((y - my) ** 2 for y in ys)
    slope = sxy / sxx
    return {
        "slope_s_per_day": round(slope, 4),
        "intercept_s": round(my - slope * mx, 3),
        "r2": None if syy <= 1e-12 else round(sxy * sxy / (sxx * syy), 4),
        "points": len(points),
    }


def _action_duration(run: ActionRun) -> float | None:
    if run.started_at is None or run.finished_at is None:
        return None
    return max(0.0, (run.finished_at - run.started_at).total_seconds())


def _recommend(
    kind: str, message: str, safe: bool, task_id: str | None, field: str, old: Any, new: Any
) -> dict[str, Any]:
    change = {"task_id": task_id, "field": field, "from": old, "to": new}
    return {"kind": kind, "message": message, "safe": safe, "change": change}


def analyze_history(
    executions: list[Execution],
    tasks: list[Task],
    params: AnalyzeParams,
    now: datetime,
    pools: dict[str, int],
) -> dict[str, Any]:
    """The analysis of ``executions`` created in ``params.since`` before ``now`` (pure)."""
    start = now - timedelta(seconds=params.since)
    by_id = {t.id: t for t in tasks}
    wanted = [
        e
        for e in executions
        if start <= e.created_at <= now
        and (params.task is None or params.task in (e.task_id, e.task_name))
    ]
    runs: dict[str, list[Execution]] = defaultdict(list)
    for e in sorted(wanted, key=lambda x: x.created_at):
        runs[e.task_id].append(e)
    action_times: dict[str, list[float]] = defaultdict(list)
    waits: dict[str, list[float]] = defaultdict(list)
    report_tasks, recommendations = [], []
    for task_id, task_runs in runs.items():
        row, advice = _task_report(task_id, task_runs, by_id.get(task_id), params, start)
        report_tasks.append(row)
        recommendations += advice
        for e in task_runs:
            for run in e.actions:
                took = _action_duration(run)
                if took is not None and run.status in FINISHED:
                    action_times[run.type].append(took)
                if run.sent_at and run.started_at and run.resource_class:
                    wait = (run.started_at - run.sent_at).total_seconds()
                    waits[run.resource_class.value].append(max(0.0, wait))
    recommendations += _pool_advice(waits, params, pools)
    timed = [r for r in report_tasks if r["duration_s"]]
    slowest = sorted(timed, key=lambda r: r["duration_s"]["p95"], reverse=True)[: params.top]
    actions: list[dict[str, Any]] = [
        {"type": t, "runs": len(v), **(summary(v) or {})} for t, v in action_times.items()
    ]
    return {
        "window": {
            "since": start.isoformat(),
            "until": now.isoformat(),
            "days": params.since / DAY_S,
        },
        "executions": len(wanted),
        "tasks": sorted(report_tasks, key=lambda r: (r["name"], r["task_id"])),
        "slowest_tasks": [
            {"task_id": r["task_id"], "name": r["name"], **r["duration_s"]} for r in slowest
        ],
        "slowest_actions": sorted(actions, key=lambda a: a["p95"], reverse=True)[: params.top],
        "queue_wait_s": {klass: summary(v) for klass, v in sorted(waits.items())},
        "recommendations": recommendations,
    }


def _task_report(
    task_id: str,
    task_runs: list[Execution],
    task: Task | None,
    params: AnalyzeParams,
    start: datetime,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One task's row of the analysis and the advice it earns."""
    finished = [e for e in task_runs if e.status in FINISHED]
    failed = [e for e in finished if e.status in FAILED]
    durations = [(e, d) for e in finished if (d := e.duration_s) is not None]
    points = [((e.created_at - start).total_seconds() / DAY_S, d) for e, d in durations]
    # per action index of the main phase: retried runs that recovered, and those that used
    # every retry and still failed; plus each action's durations (for its timeout)
    recovered: Counter[int] = Counter()
    exhausted: Counter[int] = Counter()
    action_durations: dict[int, list[float]] = defaultdict(list)
    limits: defaultdict[int, int] = defaultdict(int)
    if task is not None:
        limits.update({i: (a.retry or task.retry).max for i, a in enumerate(task.actions)})
    for e in finished:
        for run in e.actions:
            if run.phase != "main":
                continue
            if run.status is S.SUCCEEDED and run.attempts > 1:
                recovered[run.index] += 1
            if run.status in FAILED and run.attempts >= max(run.retry.max, limits[run.index]) + 1:
                exhausted[run.index] += 1  # used every retry it has now: more would be new
            if run.status in FINISHED and (took := _action_duration(run)) is not None:
                action_durations[run.index].append(took)
    name = task.name if task else task_runs[-1].task_name
    row: dict[str, Any] = {
        "task_id": task_id,
        "name": name,
        "runs": len(task_runs),
        "finished": len(finished),
        "failed": len(failed),
        "failure_rate": round(len(failed) / len(finished), 4) if finished else None,
        "by_status": dict(Counter(e.status.value for e in task_runs)),
        "duration_s": summary([d for _, d in durations]),
        "retries": {"recovered": sum(recovered.values()), "exhausted": sum(exhausted.values())},
        "trend": linear_trend(points),
        "last_error": next((e.error for e in reversed(failed) if e.error), None),
        "exists": task is not None,
    }
    if task is None or len(finished) < params.min_runs:
        return row, []
    advice = _retry_advice(task, recovered, exhausted)
    advice += _timeout_advice(task, row, action_durations, params)
    rate = row["failure_rate"]
    if rate is not None and rate > params.failure_alert and task.enabled:
        advice.append(
            _recommend(
                "failing",
                f"task {name!r} fails {rate:.0%} of its runs ({len(failed)} of {len(finished)}): "
                f"check it; last error: {row['last_error'] or 'none recorded'}. Pausing it "
                "stops the noise until it is fixed.",
                False,
                task.id,
                "enabled",
                True,
                False,
            )
        )
    return row, advice


def _retry_advice(
    task: Task, recovered: Counter[int], exhausted: Counter[int]
) -> list[dict[str, Any]]:
    """Raise retries where failures that were retried often recovered.

    An action with its own retry policy is advised on ``actions.N.retry.max``, the others on
    the task's ``retry.max``; several actions sharing the task's policy make one change.
    """
    merged: dict[str, dict[str, Any]] = {}
    for index in sorted(set(recovered) | set(exhausted)):
        if index >= len(task.actions) or not exhausted[index]:
            continue
        spec = task.actions[index]
        own = spec.retry is not None
        current = (spec.retry or task.retry).max
        field = f"actions.{index}.retry.max" if own else "retry.max"
        saved, lost = recovered[index], exhausted[index]
        share = saved / (saved + lost)
        target = min(RETRY_BOUNDS[1], current + RETRY_STEP)
        if target <= current:
            continue
        if current == 0:
            message = (
                f"task {task.name!r}: action {index} ({spec.type}) failed {lost} time(s) "
                f"with no retries; retries may help if its failures are transient. Not marked "
                "safe: a retry runs the action again, so check it is idempotent first."
            )
            safe = False
        elif share >= RETRY_RECOVERY_MIN:
            message = (
                f"raise retries of task {task.name!r} from {current} to {target}: "
                f"{share:.0%} of its retried failures of action {index} ({spec.type}) "
                f"succeeded on retry ({saved} of {saved + lost}); {lost} failed after using "
                f"all {current}"
            )
            safe = True
        else:
            continue
        previous = merged.get(field)
        if previous is None or (safe and not previous["safe"]):
            merged[field] = _recommend("retries", message, safe, task.id, field, current, target)
    return list(merged.values())


def _timeout_advice(
    task: Task,
    row: dict[str, Any],
    action_durations: dict[int, list[float]],
    params: AnalyzeParams,
) -> list[dict[str, Any]]:
    """Flag a run deadline or an action timeout that the p95 duration comes near."""
    advice = []
    durations, trend = row["duration_s"], row["trend"]
    if task.deadline and durations and durations["p95"] >= params.timeout_margin * task.deadline:
        target = math.ceil(max(durations["max"], durations["p95"]) * 1.5)
        advice.append(
            _recommend(
                "timeout",
                f"task {task.name!r}'s p95 duration ({durations['p95']:g}s) is near its deadline "
                f"({task.deadline:g}s); raise the deadline or make the task faster",
                False,
                task.id,
                "deadline",
                task.deadline,
                target,
            )
        )
    elif task.deadline and trend and trend["slope_s_per_day"] > 0 and (trend["r2"] or 0) >= 0.5:
        days_now = params.since / DAY_S
        today_s = trend["intercept_s"] + trend["slope_s_per_day"] * days_now
        days_left = (task.deadline - today_s) / trend["slope_s_per_day"]
        if days_left <= 30:
            advice.append(
                _recommend(
                    "trend",
                    f"task {task.name!r} gets slower by {trend['slope_s_per_day']:g}s a day "
                    f"(r² {trend['r2']:g}); at this rate it reaches its deadline "
                    f"({task.deadline:g}s) in about {max(0.0, days_left):.0f} days",
                    False,
                    task.id,
                    "deadline",
                    task.deadline,
                    math.ceil(today_s + 30 * trend["slope_s_per_day"]),
                )
            )
    for index, values in sorted(action_durations.items()):
        if index >= len(task.actions) or not task.actions[index].timeout:
            continue
        timeout = task.actions[index].timeout
        assert timeout is not None
        stats = summary(values)
        if stats and stats["p95"] >= params.timeout_margin * timeout:
            advice.append(
                _recommend(
                    "timeout",
                    f"task {task.name!r}: action {index} ({task.actions[index].type}) has a p95 "
                    f"of {stats['p95']:g}s, near its timeout ({timeout:g}s)",
                    False,
                    task.id,
                    f"actions.{index}.timeout",
                    timeout,
                    math.ceil(stats["max"] * 1.5),
                )
            )
    return advice


def _pool_advice(
    waits: dict[str, list[float]], params: AnalyzeParams, pools: dict[str, int]
) -> list[dict[str, Any]]:
    advice = []
    for klass, values in sorted(waits.items()):
        stats = summary(values)
        field = _pool_field(ResourceClass(klass))
        current = pools.get(field)
        if current is None or stats is None or len(values) < params.min_runs:
            continue
        if stats["p95"] >= params.queue_wait and current < POOL_BOUNDS[1]:
            advice.append(
                _recommend(
                    "pool",
                    f"actions wait {stats['p95']:g}s (p95) in the {klass} queue: raise "
                    f"{field} from {current} to {current + 1} where the {klass} pool runs",
                    True,
                    None,
                    field,
                    current,
                    current + 1,
                )
            )
    return advice


@action("analyze", resource_class="cpu", params=AnalyzeParams, process_type="optimization")
def analyze(ctx: ActionContext, **params: Any) -> dict[str, Any]:
    """Failure rates, slowest tasks and actions, duration trends and advice from history."""
    parsed = AnalyzeParams.model_validate(params)
    report = analyze_history(
        ctx.store.list_executions(limit=None),
        ctx.store.list_tasks(),
        parsed,
        utcnow(),
        pool_sizes(ctx.settings),
    )
    ctx.logger.info(
        "analyzed %d executions of %d tasks over %.1f days: %d recommendations (%d safe)",
        report["executions"],
        len(report["tasks"]),
        parsed.since / DAY_S,
        len(report["recommendations"]),
        sum(1 for r in report["recommendations"] if r["safe"]),
    )
    for rec in report["recommendations"]:
        ctx.logger.info(
            "recommendation (%s): %s", "safe" if rec["safe"] else "review", rec["message"]
        )
    return report


# --- tune -------------------------------------------------------------------------------------


class Change(BaseModel):
    """One change ``tune`` makes: ``field`` of task ``task_id`` (an id or a name) ``from`` ->
    ``to``. Fields: ``retry.max``, ``actions.N.retry.max`` (0-10), and ``TDAUTO_CONCURRENCY_*``
    (recorded as advice only). With ``from``, the change applies only if that is the current
    value, so advice that went stale is skipped."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    task_id: str | None = Field(default=None, min_length=1)
    field: str
    from_: int | None = Field(default=None, alias="from")
    to: int

    @model_validator(mode="after")
    def _check(self) -> Change:
        if not _FIELD.match(self.field):
            raise ValueError(
                f"field {self.field!r} cannot be tuned; use retry.max, actions.N.retry.max or "
                f"one of {', '.join(_pool_field(c) for c in ResourceClass)}"
            )
        if self.field.startswith("TDAUTO_"):
            if self.field not in {_pool_field(c) for c in ResourceClass}:
                raise ValueError(f"field {self.field!r}: no such pool setting")
            low, high = POOL_BOUNDS
            if self.task_id is not None:
                raise ValueError(f"{self.field} is a pool setting: give no task_id")
        else:
            low, high = RETRY_BOUNDS
            if self.task_id is None:
                raise ValueError(f"changing {self.field} needs the task_id (or name) of the task")
        if not low <= self.to <= high:
            raise ValueError(f"{self.field}: to must be within {low}..{high}, got {self.to}")
        return self


class TuneParams(BaseModel):
    """Params of ``tune``.

    - ``changes``: the changes to make; default: the safe recommendations of ``analyze``
      run with ``analysis``.
    - ``revert``: the id of a change an earlier ``tune`` applied: restore its previous value.
    - ``dry_run``: say what would change, change nothing.
    """

    model_config = ConfigDict(extra="forbid")

    changes: list[Change] | None = Field(default=None, min_length=1)
    revert: str | None = Field(default=None, pattern=r"^[0-9a-f]{6,64}$")
    dry_run: bool = False
    analysis: AnalyzeParams = Field(default_factory=AnalyzeParams)

    @model_validator(mode="after")
    def _one_mode(self) -> TuneParams:
        if self.revert is not None and self.changes is not None:
            raise ValueError("give either changes or revert, not both")
        return self


class ChangeLog:
    """``tune-changes.jsonl``: one JSON line per change applied, advised or reverted."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    found.append(record)
        return found

    def find(self, change_id: str) -> dict[str, Any] | None:
        return next((r for r in self.records() if r.get("id") == change_id), None)

    def append(self, record: dict[str, Any]) -> None:
        with self._locked(), open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())


def _change_id(ctx: ActionContext, *parts: object) -> str:
    """The same on every attempt of this action, so a redelivered tune does not apply twice."""
    text = ":".join([ctx.idempotency_key, *map(str, parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _find_task(store: Store, key: str) -> Task:
    task = store.get_task(key) or store.get_task_by_name(key)
    if task is None:
        raise ActionError(f"task {key!r} not found (give a task id or name)", "not_found")
    return task


def _policy(task: Task, field: str) -> tuple[dict[str, Any] | None, int]:
    """The retry policy ``field`` lives in (None: the action inherits the task's) and the
    effective ``max``."""
    match = _FIELD.match(field)
    assert match is not None
    if match.group(2) is None:
        return task.retry.model_dump(mode="json"), task.retry.max
    index = int(match.group(2))
    if index >= len(task.actions):
        raise ActionError(
            f"task {task.name!r} has {len(task.actions)} actions; {field} does not exist",
            "invalid",
        )
    own = task.actions[index].retry
    return (None if own is None else own.model_dump(mode="json")), (own or task.retry).max


def _with_policy(ctx: ActionContext, task: Task, field: str, policy: dict[str, Any] | None) -> Task:
    """``task`` with the policy of ``field`` replaced, re-validated as ``create_task`` does."""
    data = task.model_dump(mode="json", exclude={"next_run_at", "last_run_at"})
    match = _FIELD.match(field)
    assert match is not None
    if match.group(2) is None:
        data["retry"] = policy
    else:
        data["actions"][int(match.group(2))]["retry"] = policy
    data["updated_at"] = utcnow().isoformat()
    return Task.model_validate(data, context={"registry": REGISTRY, "settings": ctx.settings})


def _set_max(ctx: ActionContext, task: Task, field: str, to: int) -> tuple[Task, dict[str, Any]]:
    before, current = _policy(task, field)
    base = before if before is not None else task.retry.model_dump(mode="json")
    after = {**base, "max": to}
    record = {"from": current, "to": to, "policy_before": before, "policy_after": after}
    return _with_policy(ctx, task, field, after), record


def _plan(
    ctx: ActionContext, change: Change, change_id: str, reason: str, dry_run: bool
) -> tuple[dict[str, Any], Task | None]:
    """The record of ``change`` against the stored task, and the task to save (None when
    there is nothing to save). Raises ActionError (or a validation error) if it cannot apply."""
    record: dict[str, Any] = {
        "id": change_id,
        "at": utcnow().isoformat(),
        "execution_id": ctx.execution_id,
        "kind": "apply",
        "field": change.field,
        "reason": reason,
    }
    if change.task_id is None:  # a pool: advice for the operator, nothing to apply here
        current = pool_sizes(ctx.settings)[change.field]
        pool = change.field.removeprefix("TDAUTO_CONCURRENCY_").lower()
        return record | {
            "kind": "recommend",
            "task_id": None,
            "from": current,
            "to": change.to,
            "status": "recommended",
            "note": f"not applied: tdauto cannot resize a worker pool it does not own; set "
            f"{change.field}={change.to} where the {pool} pool runs and restart it "
            f"(tdauto worker {pool})",
        }, None
    task = _find_task(ctx.store, change.task_id)
    updated, values = _set_max(ctx, task, change.field, change.to)
    record |= {"task_id": task.id, "task_name": task.name, **values}
    if change.from_ is not None and change.from_ != values["from"]:
        raise ActionError(
            f"task {task.name!r}'s {change.field} is {values['from']}, not {change.from_} as "
            "the change expects (it was changed since the analysis?)",
            "conflict",
        )
    if values["from"] == change.to:
        return record | {"status": "unchanged"}, None
    if dry_run:
        return record | {"status": "dry_run"}, None
    return record | {"status": "applied"}, updated


def _revert(ctx: ActionContext, log: ChangeLog, change_id: str, dry_run: bool) -> dict[str, Any]:
    revert_id = _change_id(ctx, "revert", change_id)
    if (done := log.find(revert_id)) is not None:
        return done
    entry = log.find(change_id)
    if entry is None or entry.get("kind") == "revert":
        raise ActionError(
            f"revert: no applied change {change_id!r} in {log.path}; the ids are in the output "
            "of tune and in that file (on the host that ran it)",
            "not_found",
        )
    if entry.get("status") != "applied":
        raise ActionError(
            f"revert: change {change_id} was {entry.get('status')}, nothing was applied",
            "invalid",
        )
    earlier = [r for r in log.records() if r.get("reverts") == change_id]
    if earlier:
        raise ActionError(
            f"change {change_id} was already reverted by {earlier[0]['id']}", "invalid"
        )
    task = _find_task(ctx.store, entry["task_id"])
    field = entry["field"]
    policy, current = _policy(task, field)
    if policy == entry["policy_after"]:
        restored = entry["policy_before"]  # untouched since: exactly as before
    elif current == entry["to"]:
        base = policy if policy is not None else task.retry.model_dump(mode="json")
        restored = {**base, "max": entry["from"]}  # keep other edits, undo ours
    else:
        raise ActionError(
            f"revert: task {task.name!r}'s {field} is {current} now, not {entry['to']} as change "
            f"{change_id} set it; it was changed since, so it is left alone",
            "conflict",
        )
    record = {
        "id": revert_id,
        "at": utcnow().isoformat(),
        "execution_id": ctx.execution_id,
        "kind": "revert",
        "reverts": change_id,
        "task_id": task.id,
        "task_name": task.name,
        "field": field,
        "from": current,
        "to": entry["from"],
        "policy_before": policy,
        "policy_after": restored,
        "status": "dry_run" if dry_run else "applied",
    }
    if not dry_run:
        ctx.store.save_task(_with_policy(ctx, task, field, restored))
        log.append(record)
    return record


@action("tune", resource_class="cpu", params=TuneParams, process_type="optimization")
def tune(
    ctx: ActionContext,
    *,
    changes: list[Change] | None = None,
    revert: str | None = None,
    dry_run: bool = False,
    analysis: AnalyzeParams | None = None,
) -> dict[str, Any]:
    """Apply the safe recommendations (retries within 0-10), record and make them reversible."""
    log = ChangeLog(ctx.data_dir / "reports" / CHANGES_FILE)
    result: dict[str, Any] = {"dry_run": dry_run, "log": str(log.path)}
    if revert is not None:
        record = _revert(ctx, log, revert, dry_run)
        ctx.logger.info(
            "reverted change %s: task %s %s %s -> %s",
            revert,
            record["task_name"],
            record["field"],
            record["from"],
            record["to"],
        )
        return result | {"mode": "revert", "changes": [record], "applied": 1, "skipped": []}
    proposed: list[tuple[Change, str]]
    if changes is None:
        report = analyze_history(
            ctx.store.list_executions(limit=None),
            ctx.store.list_tasks(),
            analysis or AnalyzeParams(),
            utcnow(),
            pool_sizes(ctx.settings),
        )
        recs = report["recommendations"]
        proposed = [(Change.model_validate(r["change"]), r["message"]) for r in recs if r["safe"]]
        result |= {"mode": "analysis", "needs_review": [r for r in recs if not r["safe"]]}
    else:
        proposed = [(c, "explicit") for c in changes]
        result["mode"] = "explicit"
        for i, change in enumerate(changes):  # refuse the whole list before changing anything
            try:
                _plan(ctx, change, "check", "explicit", True)
            except (ValueError, LookupError) as exc:
                raise ActionError(f"changes[{i}] ({change.field}): {exc}", "invalid") from exc
    done, skipped = [], []
    for i, (change, reason) in enumerate(proposed):
        # analysis advises each field of a task once; an explicit list may repeat one
        where = (i,) if changes is not None else ()
        change_id = _change_id(ctx, *where, change.task_id, change.field)
        if (earlier := log.find(change_id)) is not None:  # this tune ran before: redelivered
            done.append(earlier | {"reused": True})
            continue
        try:
            record, updated = _plan(ctx, change, change_id, reason, dry_run)
            if updated is not None:
                ctx.store.save_task(updated)
        except (ActionError, ValueError, LookupError) as exc:
            if changes is not None:
                raise
            skipped.append({"change": change.model_dump(by_alias=True), "reason": str(exc)})
            ctx.logger.warning("skipped %s of %s: %s", change.field, change.task_id, exc)
            continue
        if record["status"] in ("applied", "recommended"):
            if not dry_run:
                log.append(record)
            ctx.logger.info(
                "%s %s: %s %s -> %s (change %s)%s",
                record["status"],
                record.get("task_name") or "pool",
                change.field,
                record["from"],
                record["to"],
                change_id,
                f"; {record['note']}" if "note" in record else "",
            )
        done.append(record)
    applied = sum(1 for r in done if r["status"] == "applied")
    return result | {"changes": done, "applied": applied, "skipped": skipped}


# --- monitor ----------------------------------------------------------------------------------

Section = Literal["tasks", "executions", "queues", "host"]
SECTIONS: tuple[Section, ...] = ("tasks", "executions", "queues", "host")


class MonitorParams(BaseModel):
    """Params of ``monitor``.

    - ``include``: the sections of the snapshot (default all): ``tasks``, ``executions``,
      ``queues``, ``host``.
    - ``disk_path``: whose disk ``host`` reports (default the data dir; confined; a relative
      path is relative to the data dir).
    - ``in_flight_limit``: how many in-flight executions are listed (oldest first).
    """

    model_config = ConfigDict(extra="forbid")

    include: list[Section] = Field(default_factory=lambda: list(SECTIONS), min_length=1)
    disk_path: str | None = None
    in_flight_limit: int = Field(default=20, ge=0, le=1000)

    @field_validator("disk_path")
    @classmethod
    def _confined(cls, value: str | None, info: ValidationInfo) -> str | None:
        settings = (info.context or {}).get("settings")
        if value is not None and settings is not None:
            confine(settings.data_path / value, settings.confined_paths, "disk_path")
        return value


def local_queue_depths(settings: Settings) -> dict[str, int]:
    """Messages waiting per queue in the filesystem broker (local mode).

    kombu names each message ``<ms>_<uuid>.<queue>.msg`` in the queue folder and moves it out
    when a worker takes it, so the files there are what waits.
    """
    from tdauto.app import broker_folders  # the one place that knows the folder layout

    depths = dict.fromkeys((CONTROL_QUEUE, *CLASS_QUEUES), 0)
    folder = broker_folders(settings)["queue"]
    if not folder.is_dir():
        return depths
    for entry in os.scandir(folder):
        if entry.name.endswith(".msg"):
            _, dot, queue = entry.name[: -len(".msg")].partition(".")
            if dot and queue:
                depths[queue] = depths.get(queue, 0) + 1
    return depths


def redis_queue_depths(client: Any) -> tuple[dict[str, int], int]:
    """Messages waiting per ``tdauto.*`` queue (LLEN, priority lists summed) and the number
    delivered but not yet acknowledged (kombu's ``unacked`` hash)."""
    depths = dict.fromkeys((CONTROL_QUEUE, *CLASS_QUEUES), 0)
    keys = [
        k.decode() if isinstance(k, bytes) else str(k)
        for k in client.scan_iter(match="tdauto.*", count=500, _type="list")
    ]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.llen(key)
    pipe.hlen("unacked")
    *lengths, unacked = pipe.execute()
    for key, length in zip(keys, lengths, strict=True):
        queue = key.split(KOMBU_PRIORITY_SEP, 1)[0]
        depths[queue] = depths.get(queue, 0) + int(length)
    return depths, int(unacked)


def _queues(settings: Settings) -> dict[str, Any]:
    if settings.local_mode:
        return {"mode": "local", "depth": local_queue_depths(settings)}
    import redis

    assert settings.broker_url is not None
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        depths, unacked = redis_queue_depths(client)
    finally:
        client.close()
    return {"mode": "redis", "depth": depths, "unacked": unacked}


def _host(settings: Settings, disk_path: Path) -> dict[str, Any]:
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(disk_path))
    load = [round(x, 2) for x in os.getloadavg()]
    cpus = psutil.cpu_count() or 1
    return {
        "name": settings.host,
        "cpu_percent": psutil.cpu_percent(interval=0.2),
        "cpu_count": cpus,
        "load_avg": load,
        "load_per_cpu": round(load[0] / cpus, 3),
        "memory": {
            "total_bytes": memory.total,
            "available_bytes": memory.available,
            "used_percent": memory.percent,
        },
        "disk": {
            "path": str(disk_path),
            "total_bytes": disk.total,
            "free_bytes": disk.free,
            "used_percent": disk.percent,
        },
    }


@action("monitor", resource_class="cpu", params=MonitorParams, process_type="optimization")
def monitor(
    ctx: ActionContext,
    *,
    include: list[Section] | None = None,
    disk_path: str | None = None,
    in_flight_limit: int = 20,
) -> dict[str, Any]:
    """A snapshot of tasks, executions in flight, queue depths and this host."""
    sections = set(include or SECTIONS)
    now = utcnow()
    snapshot: dict[str, Any] = {"at": now.isoformat(), "host_name": ctx.settings.host}
    errors: dict[str, str] = {}
    in_flight: list[Execution] = []
    if sections & {"tasks", "executions"}:
        for status in IN_FLIGHT:
            in_flight += ctx.store.list_executions(status=status, limit=None)
    if "tasks" in sections:
        tasks = ctx.store.list_tasks()
        busy = {e.task_id for e in in_flight}
        snapshot["tasks"] = {
            "total": len(tasks),
            "enabled": sum(1 for t in tasks if t.enabled),
            "paused": sum(1 for t in tasks if not t.enabled),
            "running": sum(1 for t in tasks if t.id in busy),
            "by_type": dict(Counter(t.type.value for t in tasks)),
        }
    if "executions" in sections:
        oldest = sorted(in_flight, key=lambda e: e.created_at)[:in_flight_limit]
        snapshot["executions"] = {
            "in_flight": len(in_flight),
            "by_status": {s.value: sum(1 for e in in_flight if e.status is s) for s in IN_FLIGHT},
            "oldest": [
                {
                    "id": e.id,
                    "task_name": e.task_name,
                    "status": e.status.value,
                    "created_at": e.created_at.isoformat(),
                    "age_s": round((now - e.created_at).total_seconds(), 1),
                }
                for e in oldest
            ],
        }
    if "queues" in sections:
        try:
            snapshot["queues"] = _queues(ctx.settings)
        except Exception as exc:  # a broker out of reach is part of the picture, not a crash
            errors["queues"] = f"{type(exc).__name__}: {exc}"
        else:
            depth = snapshot["queues"]["depth"]
            snapshot["pools"] = {
                c.value: {
                    "concurrency": pool_sizes(ctx.settings)[_pool_field(c)],
                    "queued": sum(
                        n
                        for q, n in depth.items()
                        if q == f"tdauto.{c.value}" or q.startswith(f"tdauto.{c.value}.")
                    ),
                }
                for c in ResourceClass
            }
    if "host" in sections:
        path = ctx.confine(ctx.data_dir / disk_path, "disk_path") if disk_path else ctx.data_dir
        snapshot["host"] = _host(ctx.settings, path)
    if errors:
        snapshot["errors"] = errors
        for section, message in errors.items():
            ctx.logger.warning("monitor: %s unavailable: %s", section, message)
    ctx.logger.info(
        "snapshot: %s in flight, queues %s",
        len(in_flight),
        snapshot.get("queues", {}).get("depth", "n/a"),
    )
    return snapshot


__all__ = [
    "AnalyzeParams",
    "Change",
    "ChangeLog",
    "MonitorParams",
    "TuneParams",
    "analyze",
    "analyze_history",
    "linear_trend",
    "local_queue_depths",
    "monitor",
    "redis_queue_depths",
    "tune",
]

"""The ``analyze`` action: what the execution history says.

``analyze_history`` is a pure function of the records and the time, so it can be tested
without a clock: per task, failure rates, durations, retries that recovered or ran out and a
duration trend; across tasks, the slowest tasks and actions and the waits in each pool's
queue. The params, the statistics and the rules that turn them into advice are in
``tdauto.actions.advice``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from tdauto.actions.advice import (
    DAY_S,
    AnalyzeParams,
    linear_trend,
    pool_advice,
    pool_sizes,
    recommend,
    retry_advice,
    summary,
    timeout_advice,
)
from tdauto.actions.context import ActionContext
from tdauto.actions.registry import action
from tdauto.models import ActionRun, Execution, ExecutionStatus, Task, utcnow

S = ExecutionStatus
FINISHED = (S.SUCCEEDED, S.FAILED, S.TIMED_OUT)
FAILED = (S.FAILED, S.TIMED_OUT)


def _action_duration(run: ActionRun) -> float | None:
    if run.started_at is None or run.finished_at is None:
        return None
    return max(0.0, (run.finished_at - run.started_at).total_seconds())


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
    recommendations += pool_advice(waits, params, pools)
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
    advice = retry_advice(task, recovered, exhausted)
    advice += timeout_advice(task, row, action_durations, params)
    rate = row["failure_rate"]
    if rate is not None and rate > params.failure_alert and task.enabled:
        advice.append(
            recommend(
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


__all__ = ["FAILED", "FINISHED", "AnalyzeParams", "analyze", "analyze_history"]

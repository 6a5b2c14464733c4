"""``tdauto stats`` as tables a person reads (counts per status, per type, per task), not the
dicts of ``-o json``; built from the data ``get_task_stats`` and ``get_execution_stats`` give."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from tdauto.cli.output import FitTable, Output, key, table
from tdauto.cli_print import cell


def _num(value: Any, fmt: str = "{:g}") -> str:
    return "-" if value is None else fmt.format(value)


def _counts(title: str, what: str, counts: dict[str, Any]) -> FitTable:
    rows = table(key(what), key("count"), title=title)
    for name, count in counts.items():
        rows.add_row(cell(name), str(count))
    if not counts:
        rows.add_row("-", "0")
    return rows


def _durations(title: str, what: str, by_name: dict[str, dict[str, Any]], out: Output) -> FitTable:
    rows = table(what, key("avg s"), key("p50 s"), key("p95 s"), key("max s"), title=title)
    for name, d in by_name.items():
        rows.add_row(out.fit(name, 48), *(_num(d[k]) for k in ("avg", "p50", "p95", "max")))
    return rows


def _by_task(by_name: dict[str, dict[str, Any]], out: Output) -> FitTable:
    rows = table(
        "task", key("runs"), "by status", key("last status"), key("last run"), title="Runs by task"
    )
    for name, row in by_name.items():
        statuses = ", ".join(f"{k} {v}" for k, v in row["by_status"].items())
        rows.add_row(
            out.fit(name, 48),
            str(row["total"]),
            out.fit(statuses, 60),
            row["last_status"] or "-",
            cell(row["last_run_at"] or "-"),
        )
    return rows


def _efficiency(eff: dict[str, dict[str, Any]]) -> FitTable:
    rows = table(
        key("class"),
        key("throughput /min"),
        key("utilization"),
        key("queue wait p50 s"),
        key("p95 s"),
        title="Efficiency per class",
    )
    for klass, rate in eff["throughput_per_minute"].items():
        wait = eff["queue_wait_seconds"][klass]
        util = eff["pool_utilization"][klass]
        rows.add_row(klass, f"{rate:g}", _num(util, "{:.1%}"), _num(wait["p50"]), _num(wait["p95"]))
    return rows


def _one_row(title: str, cells: dict[str, str]) -> FitTable:
    """A table of one row: its headers are the keys of ``cells``."""
    rows = table(*(key(header) for header in cells), title=title)
    rows.add_row(*cells.values())
    return rows


def stats_view(data: dict[str, Any], out: Output) -> Group:
    """Tasks, runs by status, durations, runs by task, the scheduler, efficiency per class
    and the next runs: one table each."""
    t, e = data["tasks"], data["executions"]
    rate = e["success_rate"]
    summary = _one_row(
        "Summary",
        {
            "tasks": str(t["total"]),
            "enabled": str(t["enabled"]),
            "paused": str(t["paused"]),
            "runs": str(e["total"]),
            "success rate": _num(rate, "{:.1%}"),
            "in flight": str(sum(e.get("in_flight", {}).values())),
        },
    )
    sched = e["scheduler"]
    lag = sched["lag_seconds"]
    scheduler = _one_row(
        "Scheduler",
        {
            "fires": str(sched["fires"]),
            "lag p50 s": _num(lag["p50"]),
            "lag p95 s": _num(lag["p95"]),
            "missed": str(sched["missed"]),
            "skipped": str(sched["skipped"]),
        },
    )
    window = e["window"]
    parts: list[RenderableType] = [
        Text(f"window: {window['since']} to {window['until']}"),
        summary,
        _counts("Runs by status", "status", e["by_status"]),
        _counts("Tasks by type", "type", t["by_type"]),
        _counts("Tasks by schedule", "schedule", t["by_schedule"]),
        _durations("Run durations", "runs", {"all": e["duration_seconds"]}, out),
    ]
    if e["by_task"]:
        parts.append(_by_task(e["by_task"], out))
    if e["by_action"]:
        actions = {n: r["duration_seconds"] for n, r in e["by_action"].items()}
        parts.append(_durations("Action durations", "action", actions, out))
    parts += [scheduler, _efficiency(e["efficiency"])]
    if t["next_runs"]:
        nxt = table("task", key("next run (UTC)"), title="Next runs")
        for row in t["next_runs"]:
            nxt.add_row(out.fit(row["name"], 48), cell(row["next_run_at"] or "-"))
        parts.append(nxt)
    spaced: list[RenderableType] = []
    for part in parts:
        if isinstance(part, FitTable) and isinstance(part.title, str):  # a title on its own
            spaced.append(Text(f"{part.title}:", style="bold"))  # line, never wrapped
            part.title = None
        spaced += [part, Text("")]
    return Group(*spaced[:-1])

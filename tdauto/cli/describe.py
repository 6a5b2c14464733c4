"""``task show`` and ``exec show`` as views a person reads, in the way of ``kubectl describe``:
aligned ``key: value`` lines, then one small table per section. Every text from a record
goes through ``tdauto.cli_print`` (escaped, secrets as ``***``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from tdauto.cli import base
from tdauto.cli.output import Output, key, table
from tdauto.cli_print import cell, json_inline
from tdauto.printable import json_text
from tdauto.redact import redact
from tdauto.schedules import format_duration

if TYPE_CHECKING:
    from tdauto.models import Execution


def _at(iso: str | None, zone: str = "UTC") -> str:
    """An ISO time from a record as ``2026-12-09 03:00:00 CET``, on ``zone``'s clock."""
    if not iso:
        return "-"
    return f"{datetime.fromisoformat(iso).astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M:%S %Z}"


def _pairs(rows: list[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for name, value in rows:
        grid.add_row(cell(f"{name}:"), value if isinstance(value, Text) else cell(value))
    return grid


def _section(title: str, body: RenderableType) -> Group:
    return Group(Text(""), Text(f"{title}:", style="bold"), Padding(body, (0, 0, 0, 2)))


def _seconds(value: float | None, none: str = "-") -> str:
    return none if value is None else format_duration(value)


def _retry(policy: dict[str, Any]) -> str:
    if not policy.get("max"):
        return "none"
    text = (
        f"up to {policy['max']} times, backoff {_seconds(policy['backoff'])} x{policy['factor']:g}"
        f" up to {_seconds(policy['backoff_max'])}"
    )
    if policy.get("retry_on"):
        text += f", on {', '.join(policy['retry_on'])}"
    return text


def policy_rows(task: dict[str, Any]) -> list[tuple[str, Any]]:
    """The task's run policies in words, from its record (``task show``'s Policies)."""
    limit = task["max_concurrent"] or (None if task["overlap"] == "allow" else 1)
    after = task.get("run_after")
    res = task["resources"]
    return [
        (
            "misfire",
            f"{task['misfire']} (late up to {_seconds(task['misfire_grace'])} is on "
            f"time; at most {task['max_catchup']} catch-up runs)",
        ),
        ("overlap", f"{task['overlap']} ({'no limit' if limit is None else limit} active at most)"),
        ("lock", task["lock"] or "-"),
        ("retry", _retry(task["retry"])),
        ("deadline", _seconds(task["deadline"], "none")),
        ("queue timeout", _seconds(task["queue_timeout"], "none")),
        ("priority", str(task["priority"])),
        (
            "resources",
            f"cpu {res['cpu']:g}%, memory {res['memory']:g}%, storage {res['storage']:g}%",
        ),
        ("run after", f"{after['task']} (on {after['on']})" if after else "-"),
    ]


def _actions(actions: list[dict[str, Any]]) -> Group:
    """Each action on a line (type, class, timeout, retry), then its params one per line,
    whole (this is the view that shows them all) and redacted: ``password: ***``."""
    parts: list[RenderableType] = []
    for i, a in enumerate(actions):
        retry = _retry(a["retry"]) if a.get("retry") else "the task's"
        head = Text(f"{i}  ", style="bold")
        head.append_text(cell(a["type"]))
        head.append(
            f"  (class {a.get('resource_class') or 'default'}, timeout "
            f"{_seconds(a.get('timeout'), 'none')}, retry {retry})"
        )
        # redacted whole, as a secret is known by its key (and ``headers_env`` names its
        # variables): a value redacted alone would lose the key above it
        params = redact(a.get("params") or {})
        rows = [
            (name, cell(value) if isinstance(value, str) else Text(json_text(value, None)))
            for name, value in params.items()
        ]
        body: RenderableType = _pairs(rows) if rows else Text("no params")
        parts += [head, Padding(body, (0, 0, 0, 3))]
    return Group(*parts)


def _runs(runs: list[dict[str, Any]], out: Output) -> RenderableType:
    if not runs:
        return Text("none yet")
    listing = table(
        key("id"), key("status"), key("trigger"), key("created (UTC)"), key("duration"), "error"
    )
    for r in runs:
        d = r["duration_s"]
        listing.add_row(
            cell(r["id"]),
            r["status"],
            r["trigger"],
            r["created_at"][:19].replace("T", " "),
            "-" if d is None else f"{d:.2f}s",
            out.fit(r["error"] or "", 60),
        )
    return listing


def task_view(view: dict[str, Any], out: Output) -> Group:
    """``task show``: identity, schedule in words, next fires in two zones, policies,
    actions (params redacted) and the last runs, from ``tdauto.overview.task_overview``."""
    head = _pairs(
        [
            ("Name", view["name"]),
            ("ID", view["id"]),
            ("Type", view["type"]),
            ("State", "enabled" if view["enabled"] else "paused"),
            ("Description", view["description"] or "-"),
            ("Schedule", view["schedule_text"]),
            ("Time zone", view["zone"]),
            ("Created", _at(view["created_at"])),
            ("Last run", _at(view["last_run_at"])),
        ]
    )
    if view["upcoming"]:
        zones = ["UTC"] if view["zone"] == "UTC" else ["UTC", view["zone"]]
        listing = table(*zones)
        for utc, local in zip(view["upcoming"], view["upcoming_local"], strict=True):
            listing.add_row(*(_at(utc if z == "UTC" else local, z) for z in zones))
        fires: RenderableType = listing
    else:
        fires = Text("none" + (" (paused)" if not view["enabled"] else ""))
    parts: list[RenderableType] = [
        head,
        _section("Next runs", fires),
        _section("Policies", _pairs(policy_rows(view))),
        _section("Actions", _actions(view["actions"])),
    ]
    if view["on_failure"]:
        parts.append(_section("On failure", _actions(view["on_failure"])))
    parts.append(_section("Last runs", _runs(view["last_runs"], out)))
    return Group(*parts)


def _took(started: datetime | None, finished: datetime | None) -> str:
    return f"{(finished - started).total_seconds():.2f}s" if started and finished else ""


def execution_view(execution: Execution) -> Group:
    """``exec show``: the run's identity, times and outcome, then each action (main and
    recovery) with its status, attempts, where it ran, its params (redacted) and output."""
    e = execution
    d = e.duration_s
    rows: list[tuple[str, Any]] = [
        ("ID", e.id),
        ("Task", f"{e.task_name} ({e.task_id})"),
        ("Status", e.status.value),
        ("Trigger", e.trigger.value),
        ("Scheduled for", base.fmt_time(e.scheduled_for)),
        ("Created", base.fmt_time(e.created_at)),
        ("Started", base.fmt_time(e.started_at)),
        ("Finished", base.fmt_time(e.finished_at)),
        ("Duration", "-" if d is None else f"{d:.2f}s"),
        ("Deadline", base.fmt_time(e.deadline_at)),
        ("Lock", e.lock or "-"),
        ("Priority", str(e.priority)),
    ]
    if e.outcome is not None:
        rows.append(("Outcome", e.outcome.value))
    if e.error:
        rows.append(("Error", e.error))
    steps: list[RenderableType] = []
    for r in e.actions:
        where = ", ".join(
            part
            for part in (
                r.phase,
                f"{r.attempts} attempt{'' if r.attempts == 1 else 's'}",
                f"on {r.host}" if r.host else "",
                f"queue {r.queue}" if r.queue else "",
                _took(r.started_at, r.finished_at),
            )
            if part
        )
        head = Text(f"{r.index}  ", style="bold")
        head.append_text(cell(r.type)).append(f"  {r.status.value}  ").append_text(
            cell(f"({where})")
        )
        detail: list[tuple[str, Any]] = [("params", Text(json_inline(r.params)))]
        if r.output:
            detail.append(("output", Text(json_inline(r.output))))
        if r.error:
            detail.append(("error", r.error))
        steps += [head, Padding(_pairs(detail), (0, 0, 0, 3))]
    listing = Group(*steps) if steps else Text("none")
    return Group(_pairs(rows), _section("Actions", listing))

"""How the CLI shows tasks and executions to a person (tables; ``--json`` is ``emit_json``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Column, Table

from tdauto.cli import base
from tdauto.cli_print import cell, emit_json, json_inline, safe
from tdauto.store.ids import unique_prefixes

if TYPE_CHECKING:
    from tdauto.models import Execution, Task


def id_column(ids: Iterable[str]) -> Column:
    """The id column: whole ids on one line, never cut, so any one can be copied (and any
    four or more of its first characters that no other id starts with will do)."""
    return Column("id", no_wrap=True, min_width=max((len(i) for i in ids), default=2))


def print_tasks(tasks: list[Task], out: Console | None = None) -> None:
    short = unique_prefixes([t.id for t in tasks])  # every task: no other id starts so
    ids = id_column(short.values())
    table = Table("name", ids, "type", "schedule", "enabled", "next run (UTC)", "last run")
    for t in tasks:
        table.add_row(
            cell(t.name),
            cell(short[t.id]),
            t.type.value,
            t.schedule.value,
            "yes" if t.enabled else "paused",
            base.fmt_time(t.next_run_at),
            base.fmt_time(t.last_run_at),
        )
    empty = "no tasks yet: create one with `tdauto task create -f FILE`"
    (out or base.console).print(table if tasks else empty)


def show_execution(execution: Execution, as_json: bool) -> None:
    if as_json:
        emit_json(base.exec_json(execution))
        return
    e = execution
    base.console.print(
        f"[bold]{safe(e.id)}[/bold]  {safe(e.task_name)}  {e.status.value}  "
        f"trigger={e.trigger.value}"
    )
    base.console.print(
        f"created {base.fmt_time(e.created_at)}  started {base.fmt_time(e.started_at)}  "
        f"finished {base.fmt_time(e.finished_at)}"
    )
    if e.error:
        base.console.print(f"[red]error:[/red] {safe(e.error)}")
    table = Table("#", "action", "status", "attempts", "host", "queue", "output / error")
    for r in e.actions:
        detail = r.error or (json_inline(r.output) if r.output else "")
        table.add_row(
            str(r.index),
            cell(r.type),
            r.status.value,
            str(r.attempts),
            cell(r.host or "-"),
            cell(r.queue or "-"),
            cell(detail, 120),
        )
    base.console.print(table)

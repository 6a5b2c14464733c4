"""``tdauto exec …``: list, show, follow the logs of and cancel executions."""

from __future__ import annotations

import time

import click

from tdauto.cli import base
from tdauto.cli.completion import execution_ids, task_names
from tdauto.cli.output import Output, key, output_options, table
from tdauto.cli.views import id_column, show_execution
from tdauto.cli_print import cell, log_text, safe


@base.main.group("exec")
def exec_() -> None:
    """List, show, follow the logs of and cancel executions."""


@exec_.command("list")
@click.option("--task", "task_name", default=None, shell_complete=task_names)
@click.option("--status", default=None)
@click.option("--limit", default=20, show_default=True)
@output_options
def exec_list(task_name: str | None, status: str | None, limit: int, out: Output) -> None:
    """List executions, newest first."""
    items = base.reads().list_executions(task_name, status, limit)
    if out.data:
        out.emit([base.exec_json(e) for e in items])
        return
    rows = table(
        id_column(e.id for e in items),
        "task",
        key("status"),
        key("trigger"),
        key("created (UTC)"),
        key("duration s"),
        "error",
    )
    for e in items:
        d = e.duration_s
        rows.add_row(
            cell(e.id),
            out.fit(e.task_name, 48),
            e.status.value,
            e.trigger.value,
            base.fmt_time(e.created_at),
            f"{d:.2f}" if d is not None else "-",
            out.fit(e.error or "", 60),
        )
    out.print(rows)


@exec_.command("show")
@click.argument("execution_id", shell_complete=execution_ids)
@output_options
def exec_show(execution_id: str, out: Output) -> None:
    """Describe one execution: its times, outcome and each action (params redacted)."""
    show_execution(base.reader().get_execution_sync(execution_id), out)


@exec_.command("logs")
@click.argument("execution_id", shell_complete=execution_ids)
@click.option("--follow", is_flag=True, help="Keep printing until the execution ends.")
def exec_logs(execution_id: str, follow: bool) -> None:
    """Print an execution's log."""
    system = base.reader()
    execution_id = system.get_execution_sync(execution_id).id  # a prefix becomes the id
    printed = 0
    while True:
        text = system.store.read_log(execution_id)
        click.echo(log_text(text[printed:]), nl=False)
        printed = len(text)
        if not follow or system.get_execution_sync(execution_id).status.terminal:
            break
        time.sleep(0.5)


@exec_.command("cancel")
@click.argument("execution_id", shell_complete=execution_ids)
def exec_cancel(execution_id: str) -> None:
    """Cancel an execution."""
    e = base.reader().cancel_sync(execution_id)
    base.console.print(f"{safe(e.id)}: {e.status.value}")

"""``tdauto exec …``: list, show, follow the logs of and cancel executions."""

from __future__ import annotations

import asyncio
import time

import click
from rich.table import Table

from tdauto.cli import base
from tdauto.cli.views import id_column, show_execution
from tdauto.cli_print import cell, emit_json, log_text, safe


@base.main.group("exec")
def exec_() -> None:
    """List, show, follow the logs of and cancel executions."""


@exec_.command("list")
@click.option("--task", "task_name", default=None)
@click.option("--status", default=None)
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def exec_list(task_name: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List executions, newest first."""
    items = asyncio.run(base.system().list_executions(task_name, status, limit))
    if as_json:
        emit_json([base.exec_json(e) for e in items])
        return
    table = Table(
        id_column(e.id for e in items),
        "task",
        "status",
        "trigger",
        "created (UTC)",
        "duration s",
        "error",
    )
    for e in items:
        d = e.duration_s
        table.add_row(
            cell(e.id),
            cell(e.task_name),
            e.status.value,
            e.trigger.value,
            base.fmt_time(e.created_at),
            f"{d:.2f}" if d is not None else "-",
            cell(e.error or "", 60),
        )
    base.console.print(table)


@exec_.command("show")
@click.argument("execution_id")
@click.option("--json", "as_json", is_flag=True)
def exec_show(execution_id: str, as_json: bool) -> None:
    """Show one execution (by id or id prefix) and its actions."""
    show_execution(base.system().get_execution_sync(execution_id), as_json)


@exec_.command("logs")
@click.argument("execution_id")
@click.option("--follow", is_flag=True, help="Keep printing until the execution ends.")
def exec_logs(execution_id: str, follow: bool) -> None:
    """Print an execution's log."""
    system = base.system()
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
@click.argument("execution_id")
def exec_cancel(execution_id: str) -> None:
    """Cancel an execution."""
    e = base.system().cancel_sync(execution_id)
    base.console.print(f"{safe(e.id)}: {e.status.value}")

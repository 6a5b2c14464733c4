"""How the CLI shows tasks and executions to a person (tables; ``-o json|yaml`` is
``Output.emit``); the describe-style views are in ``describe.py``, ``stats`` in
``statsview.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from tdauto.cli import base
from tdauto.cli.output import Output, key, table
from tdauto.cli_print import cell

if TYPE_CHECKING:
    from tdauto.models import Execution, Task


def print_tasks(
    tasks: list[Task], console: Console | None = None, out: Output | None = None
) -> None:
    """The tasks table (``task list``, and ``up`` once ready, on its own ``console``)."""
    out = out or Output()
    rows = table(
        "name",
        key("id"),
        key("type"),
        key("schedule"),
        key("enabled"),
        key("next run (UTC)"),
        key("last run"),
    )
    for t in tasks:
        rows.add_row(
            out.fit(t.name, 48),
            cell(t.id if out.wide else t.id[:12]),
            t.type.value,
            t.schedule.value,
            "yes" if t.enabled else "paused",
            base.fmt_time(t.next_run_at),
            base.fmt_time(t.last_run_at),
        )
    empty = "no tasks yet: create one with `tdauto task create -f FILE`"
    out.print(rows if tasks else empty, console)


def show_execution(execution: Execution, out: Output) -> None:
    """``exec show`` and ``task run --wait``'s end: the record as data, or described."""
    from tdauto.cli.describe import execution_view

    if out.data:
        out.emit(base.exec_json(execution))
        return
    out.print(execution_view(execution))

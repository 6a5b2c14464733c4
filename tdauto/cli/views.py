"""How the CLI shows tasks and executions to a person (tables; ``-o json|yaml`` is
``Output.emit``); the describe-style views are in ``describe.py``, ``stats`` in
``statsview.py``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Column

from tdauto.cli import base
from tdauto.cli.output import Output, key, table
from tdauto.cli_print import cell

if TYPE_CHECKING:
    from tdauto.models import Execution, Task


def id_column(ids: Iterable[str]) -> Column:
    """The id column: whole ids on one line, never cut, so any one can be copied (and any
    four or more of its first characters that no other id starts with will do)."""
    return Column("id", no_wrap=True, min_width=max((len(i) for i in ids), default=2))


def print_tasks(
    tasks: list[Task], console: Console | None = None, out: Output | None = None
) -> None:
    """The tasks table (``task list``, and ``up`` once ready, on its own ``console``)."""
    from tdauto.store.ids import unique_prefixes

    out = out or Output()
    short = unique_prefixes([t.id for t in tasks])  # every task: no other id starts so
    rows = table(
        "name",
        id_column(short.values()),
        key("type"),
        key("schedule"),
        key("enabled"),
        key("next run (UTC)"),
        key("last run"),
    )
    for t in tasks:
        rows.add_row(
            out.fit(t.name, 48),
            cell(t.id if out.wide else short[t.id]),
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

"""``tdauto task …``: create, list, show, pause, resume, delete and run tasks."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import click

from tdauto.cli import base, waiting
from tdauto.cli.views import print_tasks, show_execution
from tdauto.cli_print import cell, emit_json, safe, show_json


@base.main.group()
def task() -> None:
    """Create, list, show, pause, resume, delete and run tasks."""


@task.command("create")
@click.option("-f", "--file", "path", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--json", "as_json", is_flag=True)
def task_create(path: Path, as_json: bool) -> None:
    """Create the task(s) defined in a JSON or YAML file (all are checked before the first is
    created, so a bad one stores none)."""
    import warnings

    from tdauto.errors import InvalidInput, ScheduleWarning
    from tdauto.intake import read_task_file

    system = base.system()
    items = read_task_file(path, system.settings.task_file_max_bytes)
    seen: dict[str, dict[str, Any]] = {}
    for item in items:
        checked = system.check_definition(item)
        if seen.setdefault(checked.name, checked.definition()) != checked.definition():
            raise InvalidInput("name", f"{checked.name!r} names two different tasks of {path}")
    created = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScheduleWarning)
        for item in items:
            created.append(system.create_task_from(item))
    for warning in caught:
        if not issubclass(warning.category, ScheduleWarning):
            continue
        line = f"[yellow]warning:[/yellow] {safe(warning.message)}"
        base.err_console.print(line, soft_wrap=True)
    if as_json:
        emit_json([base.task_json(t) for t in created])
    else:
        for t in created:
            base.console.print(
                f"Task created: {safe(t.id)} {safe(t.name)} next run {base.fmt_time(t.next_run_at)}"
            )


@task.command("list")
@click.option("--json", "as_json", is_flag=True)
def task_list(as_json: bool) -> None:
    """List tasks."""
    tasks = asyncio.run(base.system().list_tasks())
    if as_json:
        emit_json([base.task_json(t) for t in tasks])
    else:
        print_tasks(tasks)


@task.command("show")
@click.argument("name")
@click.option("--count", default=5, show_default=True, help="How many next fire times.")
@click.option("--json", "as_json", is_flag=True)
def task_show(name: str, count: int, as_json: bool) -> None:
    """Show a task (by name, id or id prefix) and its next fire times."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from tdauto.scheduler import compute_next_ts

    system = base.system()
    t = asyncio.run(system.get_task(name))
    upcoming: list[datetime] = []
    after = time.time()
    while len(upcoming) < count:  # the task's own fire times: its anchor, spread and jitter
        nxt = compute_next_ts(t, after, system.settings.timezone)
        if nxt is None:
            break
        upcoming.append(datetime.fromtimestamp(nxt, UTC))
        after = nxt
    if as_json:
        emit_json({**base.task_json(t), "upcoming": [u.isoformat() for u in upcoming]})
        return
    show_json(base.console, base.task_json(t))
    zone = ZoneInfo(t.zone or system.settings.timezone)
    for u in upcoming:
        base.console.print(
            f"  next: {u:%Y-%m-%d %H:%M:%S} UTC  ({u.astimezone(zone):%Y-%m-%d %H:%M %Z})"
        )


def _task_change(verb: str) -> Any:
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True)
    def command(name: str, as_json: bool) -> None:
        system = base.system()
        method = getattr(system, f"{verb}_task")
        result = asyncio.run(method(name))
        if as_json:
            emit_json(base.task_json(result) if result is not None else {"deleted": name})
        else:
            base.console.print(f"{verb}d", cell(name))

    command.__doc__ = f"{verb.capitalize()} a task (by name, id or id prefix)."
    return command


for _verb in ("pause", "resume", "delete"):
    task.command(_verb)(_task_change(_verb))


@task.command("run")
@click.argument("name")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the run to end, with progress.")
@click.option("--timeout", type=base.Seconds(min=0), default=None, help="Seconds to wait at most.")
@click.option(
    "--params", default=None, help='JSON overrides, e.g. \'{"cleanup": {"dry_run": true}}\'.'
)
@click.option("--json", "as_json", is_flag=True)
def task_run(
    name: str, wait_: bool, timeout: float | None, params: str | None, as_json: bool
) -> None:
    """Run a task now (by name, id or id prefix); prints `started ID` at once."""
    from tdauto.intake import loads_json

    system = base.system()
    overrides = loads_json(params, "--params") if params else None
    execution = system.trigger_sync(name, overrides)
    if as_json and not wait_:
        emit_json(base.exec_json(execution))
        return
    if not wait_:
        waiting.say_started(execution, to_stderr=as_json)
        return
    execution = waiting.wait_for(system, execution, timeout, as_json)
    show_execution(execution, as_json)
    if execution.status.value != "SUCCEEDED":
        sys.exit(1)

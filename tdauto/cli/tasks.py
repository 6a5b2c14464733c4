"""``tdauto task …``: create, list, show, pause, resume, delete and run tasks."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import click

from tdauto.cli import base
from tdauto.cli.views import print_tasks, show_execution
from tdauto.cli_print import cell, emit_json, safe, show_json


@base.main.group()
def task() -> None:
    """Create, list, show, pause, resume, delete and run tasks."""


@task.command("create")
@click.option(
    "-f", "--file", "paths", type=click.Path(path_type=Path), required=True, multiple=True
)
@click.option("--json", "as_json", is_flag=True)
def task_create(paths: tuple[Path, ...], as_json: bool) -> None:
    """Create or update the task(s) of JSON or YAML files: `tdauto apply -f` without
    pruning (all are checked before the first is stored, so a bad one stores none)."""
    from tdauto.cli.apply import print_plan, run_apply

    plan = run_apply(paths)
    if as_json:
        emit_json([base.task_json(t) for t in plan.stored.values()])
    else:
        print_plan(plan, dry_run=False)


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
    """Show a task (by name or id) and its next fire times."""
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

    command.__doc__ = f"{verb.capitalize()} a task (by name or id)."
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
    """Run a task now."""
    from tdauto.intake import loads_json

    system = base.system()
    overrides = loads_json(params, "--params") if params else None
    execution = system.trigger_sync(name, overrides)
    if not wait_:
        if as_json:
            emit_json(base.exec_json(execution))
        else:
            base.console.print("Execution queued:", cell(execution.id))
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    with base.console.status("waiting…") as status:
        while True:
            execution = system.get_execution_sync(execution.id)
            steps = ", ".join(f"{r.type}:{r.status.value}" for r in execution.actions)
            status.update(f"{execution.status.value}  {safe(f'[{steps}]')}")
            if execution.status.terminal:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise click.ClickException(f"still {execution.status.value} after {timeout}s")
            time.sleep(0.3)
    show_execution(execution, as_json)
    if execution.status.value != "SUCCEEDED":
        sys.exit(1)

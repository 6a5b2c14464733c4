"""``tdauto task …``: create, list, show, pause, resume, delete and run tasks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from tdauto.cli import base, waiting
from tdauto.cli.completion import task_names
from tdauto.cli.output import Output, output_options
from tdauto.cli.views import print_tasks, show_execution
from tdauto.cli_print import cell


@base.main.group()
def task() -> None:
    """Create, list, show, pause, resume, delete and run tasks."""


@task.command("create")
@click.option(
    "-f", "--file", "paths", type=click.Path(path_type=Path), required=True, multiple=True
)
@output_options
def task_create(paths: tuple[Path, ...], out: Output) -> None:
    """Create or update the task(s) of JSON or YAML files: `tdauto apply -f` without
    pruning (all are checked before the first is stored, so a bad one stores none)."""
    from tdauto.cli.apply import print_plan, run_apply

    plan = run_apply(paths)
    if out.data:
        out.emit([base.task_json(t) for t in plan.stored.values()])
    else:
        print_plan(plan, dry_run=False)


@task.command("list")
@output_options
def task_list(out: Output) -> None:
    """List tasks."""
    tasks = base.reads().list_tasks()
    if out.data:
        out.emit([base.task_json(t) for t in tasks])
    else:
        print_tasks(tasks, out=out)


@task.command("show")
@click.argument("name", shell_complete=task_names)
@click.option("--count", default=5, show_default=True, help="How many next fire times.")
@click.option("--runs", default=5, show_default=True, help="How many last runs.")
@output_options
def task_show(name: str, count: int, runs: int, out: Output) -> None:
    """Describe a task (by name or id): schedule in words, next fire times in UTC and the
    task's zone, policies, actions (secrets as ***) and its last runs."""
    import asyncio

    from tdauto.cli.describe import task_view
    from tdauto.overview import task_overview

    system = base.reader()
    t = asyncio.run(system.get_task(name))
    last = asyncio.run(system.list_executions(t.name, None, runs)) if runs > 0 else []
    view = task_overview(t, last, count, system.settings.timezone)
    if out.data:
        out.emit(view)
    else:
        out.print(task_view(view, out))


def _task_change(verb: str) -> Any:
    @click.argument("name", shell_complete=task_names)
    @output_options
    def command(name: str, out: Output) -> None:
        import asyncio

        system = base.reader()
        method = getattr(system, f"{verb}_task")
        result = asyncio.run(method(name))
        if out.data:
            out.emit(base.task_json(result) if result is not None else {"deleted": name})
        else:
            base.console.print(f"{verb}d", cell(name))

    command.__doc__ = f"{verb.capitalize()} a task (by name, id or id prefix)."
    return command


for _verb in ("pause", "resume", "delete"):
    task.command(_verb)(_task_change(_verb))


@task.command("run")
@click.argument("name", shell_complete=task_names)
@click.option("--wait", "wait_", is_flag=True, help="Wait for the run to end, with progress.")
@click.option("--timeout", type=base.Seconds(min=0), default=None, help="Seconds to wait at most.")
@click.option(
    "--params", default=None, help='JSON overrides, e.g. \'{"cleanup": {"dry_run": true}}\'.'
)
@output_options
def task_run(
    name: str, wait_: bool, timeout: float | None, params: str | None, out: Output
) -> None:
    """Run a task now (by name, id or id prefix); prints `started ID` at once."""
    from tdauto.intake import loads_json

    system = base.reader()
    overrides = loads_json(params, "--params") if params else None
    execution = system.trigger_sync(name, overrides)
    base.warn(system.worker_warnings([execution.task_id]))
    if out.data and not wait_:
        out.emit(base.exec_json(execution))
        return
    if not wait_:
        waiting.say_started(execution, to_stderr=out.data)
        return
    execution = waiting.wait_for(system, execution, timeout, out.data)
    show_execution(execution, out)
    if execution.status.value != "SUCCEEDED":
        sys.exit(1)


from tdauto.cli import update  # noqa: E402, F401 - registers `task update` on this group

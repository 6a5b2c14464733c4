"""``tdauto task update NAME [--set KEY=VALUE ...] [-f FILE]``: change a task in place, by
dotted keys (``tdauto.intake.assign``) or by the fields of a one-task file, validated again
as at creation (``AutomationSystems.update_task_sync``) and rescheduled from now."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tdauto.cli import base
from tdauto.cli.output import Output, output_options
from tdauto.cli.tasks import task
from tdauto.cli_print import safe


@task.command("update")
@click.argument("name")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set one field; dotted keys, YAML values: enabled=false, schedule_config.hour=3, "
    "actions.0.params.older_than=7d. Repeatable; applied after -f.",
)
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSON or YAML file of one task: the fields it gives replace the task's.",
)
@output_options
def task_update(name: str, assignments: tuple[str, ...], path: Path | None, out: Output) -> None:
    """Change a task (by name, id or id prefix); its runs so far are kept."""
    import asyncio

    from tdauto.errors import InvalidInput
    from tdauto.intake import read_task_file

    system = base.system()
    changes: dict[str, Any] = {}
    if path is not None:
        items = read_task_file(path, system.settings.task_file_max_bytes)
        if len(items) != 1:
            raise InvalidInput(
                str(path), f"holds {len(items)} tasks; give task update a file of one task"
            )
        changes = items[0]
    if not changes and not assignments:
        raise InvalidInput("task update", "nothing to change; give --set KEY=VALUE or -f FILE")
    before = asyncio.run(system.get_task(name)).definition()
    after = system.update_task_sync(name, changes, assignments)
    if out.data:
        out.emit(base.task_json(after))
        return
    changed = [key for key, value in after.definition().items() if before.get(key) != value]
    what = f"updated ({', '.join(changed)})" if changed else "unchanged"
    base.console.print(
        f"{what}: {safe(after.name)} {safe(after.id)} next run {base.fmt_time(after.next_run_at)}",
        soft_wrap=True,
    )

"""``tdauto apply -f PATH...`` and ``tdauto export``: task files kept in git, applied as a
whole (the plan is the facade's, ``tdauto/apply.py``); ``task create -f`` is apply without
pruning."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tdauto.cli import base
from tdauto.cli.output import Output, output_options
from tdauto.cli_print import safe

if TYPE_CHECKING:
    from tdauto.apply import Plan


def run_apply(paths: tuple[Path, ...], **how: bool) -> Plan:
    """Read ``paths``, apply them with ``how`` and print the schedule warnings (stderr)."""
    from tdauto.apply import entries_from_paths
    from tdauto.errors import ScheduleWarning

    system = base.system()
    settings = system.settings
    entries, problems = entries_from_paths(paths, settings.task_file_max_bytes, settings.data_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScheduleWarning)
        plan = system.apply(entries, problems, **how)
    for warning in caught:
        if issubclass(warning.category, ScheduleWarning):
            line = f"[yellow]warning:[/yellow] {safe(warning.message)}"
            base.err_console.print(line, soft_wrap=True)
    if not how.get("dry_run"):  # what the running workers cannot run: a warning each
        base.warn(system.worker_warnings(list(plan.stored.values())))
    for problem in plan.problems:  # only with --partial: the rest was applied
        base.err_console.print(f"[red]error:[/red] {safe(problem)}", soft_wrap=True)
    return plan


def print_plan(plan: Plan, dry_run: bool) -> None:
    suffix = " (dry run)" if dry_run else ""
    for step in plan.steps:
        base.console.print(safe(step.line()) + suffix, soft_wrap=True)
        if dry_run and step.diff:
            for line in step.diff.splitlines():
                colour = {"+": "green", "-": "red", "@": "cyan"}.get(line[:1])
                text = safe(line)
                base.console.print(f"[{colour}]{text}[/{colour}]" if colour else text)
    if not plan.steps:
        base.console.print("no tasks in the files" + suffix)


def plan_json(plan: Plan, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "steps": [
            {
                "name": s.name,
                "result": s.verb,
                "fields": list(s.fields),
                "id": _id(plan, s.name) or (s.current.id if s.current else None),
                "diff": s.diff,
            }
            for s in plan.steps
        ],
        "errors": plan.problems,
    }


def _id(plan: Plan, name: str) -> str | None:
    stored = plan.stored.get(name)
    return stored.id if stored else None


_FILES = click.option(
    "-f",
    "--file",
    "paths",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="A task file (.yaml, .yml, .json) or a folder of them; repeat for more.",
)


@base.main.command("apply")
@_FILES
@click.option("--dry-run", is_flag=True, help="Print the plan and a diff; store nothing.")
@click.option("--prune", is_flag=True, help="Delete tasks apply made that are not in the files.")
@click.option("--prune-all", is_flag=True, help="Delete every task that is not in the files.")
@click.option("--partial", is_flag=True, help="Apply the valid tasks even if some are not.")
@output_options
def apply_command(
    paths: tuple[Path, ...],
    dry_run: bool,
    prune: bool,
    prune_all: bool,
    partial: bool,
    out: Output,
) -> None:
    """Create, update (or with --prune delete) tasks to match task files. Everything is
    checked first: nothing is stored unless every task is valid (unless --partial)."""
    plan = run_apply(paths, dry_run=dry_run, prune=prune, prune_all=prune_all, partial=partial)
    if out.data:
        out.emit(plan_json(plan, dry_run))
    else:
        print_plan(plan, dry_run)
    if plan.problems:
        raise SystemExit(2)


@base.main.command("export")
@click.option(
    "--output-file",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write to this file instead of the standard output.",
)
def export_command(out: Path | None) -> None:
    """Write every task as YAML that `tdauto apply -f` takes back unchanged (values under
    secret-looking keys are written as ***, as everywhere tdauto prints)."""
    import asyncio

    from tdauto.apply import export_yaml

    tasks = asyncio.run(base.reader().list_tasks())  # a reader: no empty store made
    text = export_yaml(tasks)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        base.err_console.print(f"wrote {len(tasks)} task(s) to {safe(out)}")

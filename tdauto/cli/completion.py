"""Shell completion (click's, for bash, zsh and fish): ``tdauto completion SHELL`` prints the
script, and the callbacks here complete task names and execution ids from the store.

A callback reads through ``tdauto.queries`` (no Celery app, no actions), never makes a data
dir that is not there, and completes nothing rather than print an error into the shell."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from click.shell_completion import CompletionItem, get_completion_class

from tdauto.cli import base

if TYPE_CHECKING:
    from tdauto.queries import StoreReads

SHELLS = ("bash", "zsh", "fish")
#: the environment variable click's scripts set when they ask ``tdauto`` for completions
COMPLETE_VAR = "_TDAUTO_COMPLETE"
#: how many of the newest executions are offered
EXECUTIONS_OFFERED = 50


def _reads() -> StoreReads | None:
    from tdauto.queries import StoreReads
    from tdauto.settings import Settings

    settings = Settings()
    if settings.broker_url is None and not settings.data_path.is_dir():
        return None  # no store here yet: nothing to offer, and none is made
    return StoreReads(settings)


def task_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Task names starting with what is typed (and ids, once it is the start of one)."""
    try:
        reads = _reads()
        tasks = reads.list_tasks() if reads else []
    except Exception:  # a shell prompt is no place for an error
        return []
    items = [
        CompletionItem(t.name, help=t.schedule.value)
        for t in tasks
        if t.name.startswith(incomplete)
    ]
    if incomplete:
        items += [CompletionItem(t.id, help=t.name) for t in tasks if t.id.startswith(incomplete)]
    return items


def execution_ids(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Ids of the newest executions starting with what is typed, with task and status."""
    try:
        reads = _reads()
        runs = reads.list_executions(limit=EXECUTIONS_OFFERED) if reads else []
    except Exception:  # a shell prompt is no place for an error
        return []
    return [
        CompletionItem(e.id, help=f"{e.task_name} {e.status.value}")
        for e in runs
        if e.id.startswith(incomplete)
    ]


@base.main.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for bash, zsh or fish (the README says where it goes)."""
    root = click.get_current_context().find_root()
    script = get_completion_class(shell)
    assert script is not None  # every name in SHELLS is one of click's
    click.echo(script(root.command, {}, "tdauto", COMPLETE_VAR).source())

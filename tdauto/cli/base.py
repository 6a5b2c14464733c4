"""The ``tdauto`` command's root: the group, its one-line errors, the consoles and the helpers
every command module shares. Commands live in ``run``, ``tasks``, ``execs``, ``info`` and
``backup``; ``tdauto.cli`` names them, and the group imports a command's module only when
that command is asked for (docs/architecture.md, "Start-up cost")."""

from __future__ import annotations

import importlib
import math
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from tdauto.cli_print import error_line
from tdauto.exits import EXPECTED, exit_code

if TYPE_CHECKING:  # the facade is imported when a command needs it: `up` starts pools first
    from tdauto.api import AutomationSystems
    from tdauto.models import Execution, Task
    from tdauto.queries import StoreReads

console = Console(emoji=False)  # `:name:` in a record prints as typed
err_console = Console(stderr=True, emoji=False)


def system(must_exist: bool = False) -> AutomationSystems:
    """The facade on the store these settings find; a reader (``must_exist``) never makes
    one: with none found it stops with where it looked and how to fix it (exit 3)."""
    from tdauto.api import AutomationSystems
    from tdauto.redisconn import check_settings

    system = AutomationSystems(must_exist=must_exist)
    check_settings(system.settings)  # Redis down: one line and exit 1, not a retry loop
    return system


def reads() -> StoreReads:
    """The store for a command that only reads (``task list``, ``exec list``): no Celery app
    and no actions to import, so it answers in a fraction of ``system()``'s start-up."""
    from tdauto.queries import StoreReads

    return StoreReads()
def reader() -> AutomationSystems:
    """The facade for a command that only reads (or changes what exists): no empty store."""
    return system(must_exist=True)


def warn(lines: list[str], on: Console | None = None) -> None:
    """Each line as a warning on stderr (a hint that nothing will happen, not an error)."""
    from tdauto.cli_print import safe

    for line in lines:
        (on or err_console).print(f"[yellow]warning:[/yellow] {safe(line)}", soft_wrap=True)


def task_json(task: Task) -> dict[str, Any]:
    return task.model_dump(mode="json")


def exec_json(execution: Execution) -> dict[str, Any]:
    return execution.model_dump(mode="json")


def fmt_time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


class Seconds(click.FloatRange):
    """Seconds, refusing NaN and infinity (a NaN timeout compares false and never passes)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number


class _Group(click.Group):
    """Turns tdauto's input errors into one clear line and exit code 2, and loads a command's
    module when the command is first asked for (click's "lazy loading subcommands")."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: command name -> "module" (whose decorators add the command to ``main``) or
        #: "module:attribute" (a command object to add); filled in by ``tdauto.cli``
        self.lazy: dict[str, str] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            loaded = importlib.import_module(module)
            if attribute:
                self.add_command(getattr(loaded, attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EXPECTED as exc:  # exit codes: tdauto/exits.py, the README
            if ctx.meta.get("tdauto.debug") or _env_debug():
                err_console.print(traceback.format_exc(), markup=False, highlight=False)
            _say_error(error_line(exc))
            sys.exit(exit_code(exc))


def _env_debug() -> bool:
    # TDAUTO_DEBUG (settings.debug) read directly: the error may be the settings' own
    return os.environ.get("TDAUTO_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def _say_error(text: str) -> None:
    # one line per problem whatever the width (rich wraps at 80 columns when not on a
    # terminal), and the message is text, not markup
    for line in text.splitlines() or [""]:
        err_console.print(f"[red]error:[/red] {line}", soft_wrap=True)


@click.group(cls=_Group)
@click.version_option(package_name="tdauto", prog_name="tdauto", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show the traceback of an error (or TDAUTO_DEBUG=1).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """tdauto: process automation on Celery and Redis (local mode without TDAUTO_BROKER_URL)."""
    ctx.meta["tdauto.debug"] = debug

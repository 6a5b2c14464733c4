"""The ``tdauto`` command's root: the group, its one-line errors, the consoles and the helpers
every command module shares. Commands live in ``run``, ``tasks``, ``execs``, ``info`` and
``backup``; ``tdauto.cli`` imports them all."""

from __future__ import annotations

import math
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from tdauto.cli_print import error_line
from tdauto.exits import EXPECTED, exit_code
from tdauto.redisconn import check_settings

if TYPE_CHECKING:  # the facade is imported when a command needs it: `up` starts pools first
    from tdauto.api import AutomationSystems
    from tdauto.models import Execution, Task

console = Console(emoji=False)  # `:name:` in a record prints as typed
err_console = Console(stderr=True, emoji=False)


def system() -> AutomationSystems:
    from tdauto.api import AutomationSystems

    system = AutomationSystems()
    check_settings(system.settings)  # Redis down: one line and exit 1, not a retry loop
    return system


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
    """Turns tdauto's input errors into one clear line and exit code 2."""

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
@click.option("--debug", is_flag=True, help="Show the traceback of an error (or TDAUTO_DEBUG=1).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """tdauto: process automation on Celery and Redis (local mode without TDAUTO_BROKER_URL)."""
    ctx.meta["tdauto.debug"] = debug

"""The ``tdauto`` command's root: the group, its one-line errors, the consoles and the helpers
every command module shares. Commands live in ``run``, ``tasks``, ``execs``, ``info`` and
``backup``; ``tdauto.cli`` imports them all."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError
from rich.console import Console

from tdauto.cli_print import error_line
from tdauto.errors import StoreNotFound, TdautoError
from tdauto.redisconn import RedisUnavailable, check_settings

if TYPE_CHECKING:  # the facade is imported when a command needs it: `up` starts pools first
    from tdauto.api import AutomationSystems
    from tdauto.models import Execution, Task

console = Console(emoji=False)  # `:name:` in a record prints as typed
err_console = Console(stderr=True, emoji=False)


def system(must_exist: bool = False) -> AutomationSystems:
    """The facade on the store these settings find; a reader (``must_exist``) never makes
    one: with none found it stops with where it looked and how to fix it (exit 3)."""
    from tdauto.api import AutomationSystems

    system = AutomationSystems(must_exist=must_exist)
    check_settings(system.settings)  # Redis down: one line and exit 1, not a retry loop
    return system


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
    """Turns tdauto's input errors into one clear line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RedisUnavailable as exc:  # not the input's fault: exit 1, as for a failed run
            _say_error(error_line(exc))
            sys.exit(1)
        except StoreNotFound as exc:  # nothing to read, and nothing was made: exit 3
            _say_error(error_line(exc))
            sys.exit(3)
        except (TdautoError, ValidationError, ValueError) as exc:
            _say_error(error_line(exc))
            sys.exit(2)


def _say_error(text: str) -> None:
    # one line whatever the width (rich wraps at 80 columns when not on a terminal), and the
    # message is text, not markup
    err_console.print(f"[red]error:[/red] {text}", soft_wrap=True)


@click.group(cls=_Group)
def main() -> None:
    """tdauto: process automation on Celery and Redis (local mode without TDAUTO_BROKER_URL)."""

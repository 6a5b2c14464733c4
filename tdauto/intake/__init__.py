"""Checks of what a user gives tdauto (a task, its update, a trigger's overrides, a task file)
that only input needs: records read back from a store are never put through them, so a
definition stored before a limit existed still loads (``docs/architecture.md``, Input).

Every refusal is an :class:`~tdauto.errors.InvalidInput` naming the field and the fix, raised
before anything is stored.
"""

from tdauto.intake.assign import assign, parse_assignment
from tdauto.intake.checks import (
    check_overrides,
    check_run_params,
    check_task_input,
    check_values,
    checked_schedule_config,
    checked_task,
)
from tdauto.intake.files import loads_json, loads_yaml, read_task_file
from tdauto.intake.schedule import schedule_problems

__all__ = [
    "assign",
    "check_overrides",
    "check_run_params",
    "check_task_input",
    "check_values",
    "checked_schedule_config",
    "checked_task",
    "loads_json",
    "loads_yaml",
    "parse_assignment",
    "read_task_file",
    "schedule_problems",
]

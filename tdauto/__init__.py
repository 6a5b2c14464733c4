"""tdauto: process automation for TD Generator on Celery and Redis.

The public API (design section 1): ``AutomationSystems`` and the model enums, the
``@action`` decorator, and the error tree.
"""

from tdauto.actions.registry import action
from tdauto.api import AutomationSystems
from tdauto.errors import InvalidInput, NameTaken, NotFound, PathNotAllowed, TdautoError
from tdauto.models import (
    ActionRun,
    ActionSpec,
    Execution,
    ExecutionStatus,
    ProcessType,
    ResourceClass,
    Resources,
    ScheduleType,
    Task,
    Trigger,
)

__all__ = [
    "ActionRun",
    "ActionSpec",
    "AutomationSystems",
    "Execution",
    "ExecutionStatus",
    "InvalidInput",
    "NameTaken",
    "NotFound",
    "PathNotAllowed",
    "ProcessType",
    "ResourceClass",
    "Resources",
    "ScheduleType",
    "Task",
    "TdautoError",
    "Trigger",
    "action",
]

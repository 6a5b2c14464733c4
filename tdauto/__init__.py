"""tdauto: process automation for TD Generator on Celery and Redis.

The public API (design section 1): ``AutomationSystems`` and the model enums, the
``@action`` decorator, and the error tree. Each is imported when first used (PEP 562), so a
process that needs only part of tdauto (``tdauto up`` until its pools are started) does not
pay for the facade, Celery and every action first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_ERRORS = ("InvalidInput", "NameTaken", "NotFound", "PathNotAllowed", "TdautoError")
_MODELS = (
    "ActionRun",
    "ActionSpec",
    "Execution",
    "ExecutionStatus",
    "ProcessType",
    "ResourceClass",
    "Resources",
    "ScheduleType",
    "Task",
    "Trigger",
)
_HOME = {
    "action": "tdauto.actions.registry",
    "AutomationSystems": "tdauto.api",
    **dict.fromkeys(_ERRORS, "tdauto.errors"),
    **dict.fromkeys(_MODELS, "tdauto.models"),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'tdauto' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


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

"""The facade's input checks, in the order it runs them: the raw input first (before pydantic
builds anything from it), then what validation made of it; the schedule (``schedule.py``) is
checked last, with the first fire time the facade computes anyway."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tdauto.errors import InvalidInput
from tdauto.intake.limits import check_params_size, check_sizes
from tdauto.intake.values import check_identifiers, check_parsed
from tdauto.models import ActionSpec, Task


def check_task_input(data: Mapping[str, Any], settings: Any) -> bool:
    """Before validation: sizes, nesting, NaN and infinity, identifiers' characters. True when
    validation could turn a value into a number the user did not write (check_task's
    ``coercible``): a boolean, a string such as "nan", a value of another type."""
    walk = check_sizes(data, settings)
    check_identifiers(data)
    return walk.coercible


def check_values(
    data: Mapping[str, Any], task: Task, context: dict[str, Any], coercible: bool = True
) -> None:
    """After validation: booleans read as numbers and values that became NaN or infinity, in
    the task and in each action's parsed params. Only needed when the input had a value that
    could become one (``check_task_input``'s answer); before any schedule is computed, since
    an infinite jitter would overflow it."""
    if not coercible:
        return
    check_parsed(data, task.model_dump())
    registry = context.get("registry")
    if registry is None:
        return
    for path, spec in _specs(task):
        raw = _at(data, path)
        raw_params = raw.get("params") if isinstance(raw, Mapping) else None
        parsed = registry.parse_params(spec.type, spec.params, context)
        check_parsed(raw_params or {}, parsed.model_dump(), (*path, "params"))


def check_overrides(params: object, task: Task, settings: Any) -> None:
    """A trigger's ``params``: ``{action type or index: {param: value}}`` for actions the task
    has; an override for any other would be silently dropped."""
    if params is None:
        return
    if not isinstance(params, Mapping):
        raise InvalidInput("params", "must map an action type or index to its params")
    known = {spec.type for spec in task.actions} | {str(i) for i in range(len(task.actions))}
    for key, value in params.items():
        if key not in known:
            raise InvalidInput(
                f"params.{key}",
                f"the task has no action {key!r}; its actions are "
                + ", ".join(f"{i} ({spec.type})" for i, spec in enumerate(task.actions)),
            )
        if not isinstance(value, Mapping):
            raise InvalidInput(f"params.{key}", "must be a mapping of param names to values")
        check_params_size(("params", key), value, settings)


def _specs(task: Task) -> list[tuple[tuple[Any, ...], ActionSpec]]:
    found: list[tuple[tuple[Any, ...], ActionSpec]] = []
    for key in ("actions", "on_failure"):
        for index, spec in enumerate(getattr(task, key)):
            found.append(((key, index), spec))
            for inner, sub in enumerate(spec.on_failure):
                found.append(((key, index, "on_failure", inner), sub))
    return found


def _at(data: object, path: tuple[Any, ...]) -> object:
    for part in path:
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data

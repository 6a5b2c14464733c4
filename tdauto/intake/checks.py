"""The facade's input checks, in the order it runs them: the raw input first (before pydantic
builds anything from it), then what validation made of it; the schedule (``schedule.py``) is
checked last, with the first fire time the facade computes anyway."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from tdauto.errors import InvalidInput
from tdauto.intake.fields import field_error
from tdauto.intake.limits import check_params_size, check_sizes, field_path, measure
from tdauto.intake.schedule import schedule_problems
from tdauto.intake.values import check_identifiers, check_parsed
from tdauto.models import ActionRun, ActionSpec, ScheduleConfig, Task
from tdauto.suggest import did_you_mean


def check_task_input(data: Mapping[str, Any], settings: Any) -> bool:
    """Before validation: sizes, nesting, NaN and infinity, identifiers' characters. True when
    validation could turn a value into a number the user did not write (check_task's
    ``coercible``): a boolean, a string such as "nan", a value of another type."""
    walk = check_sizes(data, settings)
    check_identifiers(data)
    return walk.coercible


def checked_task(
    data: Mapping[str, Any],
    context: dict[str, Any],
    next_ts_of: Callable[[Task], float | None],
    now_ts: float,
) -> tuple[Task, float | None, list[str]]:
    """``data`` checked and validated as a Task, its next fire time (``next_ts_of``, run only
    on values checked finite) and the warnings of its schedule, in the order: raw input,
    validation (pydantic's errors as one line), values, schedule."""
    coercible = check_task_input(data, context["settings"])
    try:
        task = Task.model_validate(data, context=context)
    except ValidationError as exc:
        raise field_error(exc) from exc
    if task.run_after is not None and task.run_after.task == task.name:
        raise InvalidInput("run_after.task", "a task cannot run after itself")
    check_values(data, task, context, coercible)
    next_ts = next_ts_of(task)
    zone = context["settings"].timezone
    return task, next_ts, schedule_problems(task, now_ts, zone, next_ts)


def check_run_params(runs: Sequence[ActionRun], context: dict[str, Any]) -> None:
    """A trigger's runs: each action's params (its overrides applied) parsed, as at create."""
    for run in runs:
        try:
            parsed = context["registry"].parse_params(run.type, run.params, context)
        except ValidationError as exc:
            raise field_error(exc, ("params", run.index)) from exc
        check_parsed(run.params, parsed.model_dump(), ("params", run.index))


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


def checked_schedule_config(config: Mapping[str, Any], settings: Any) -> ScheduleConfig:
    """A ``schedule_config`` given alone (``preview_schedule``), held to the same checks."""
    root = ("schedule_config",)
    walk = measure(config, settings.task_max_bytes, root, "TDAUTO_TASK_MAX_BYTES", "it")
    try:
        parsed = ScheduleConfig.model_validate(config)
    except ValidationError as exc:
        raise field_error(exc, root) from exc
    if walk.coercible:
        check_parsed(config, parsed.model_dump(), root)
    return parsed


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
                field_path(("params", key)),
                f"the task has no action {key!r}; its actions are "
                + ", ".join(f"{i} ({spec.type})" for i, spec in enumerate(task.actions))
                + did_you_mean(key, known),
            )
        if not isinstance(value, Mapping):
            raise InvalidInput(
                field_path(("params", key)), "must be a mapping of param names to values"
            )
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

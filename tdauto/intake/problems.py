"""A refused task as the lines a person reads: ``actions[0].params.argv: …``, one line per
problem (every problem pydantic found, not the first three), no URL, no class name, and
``did you mean 'schedule_config'?`` for a key the model does not have (``tdauto.suggest``).

``tdauto apply`` prefixes each line with the file and the task (``FILE: tasks[1]
"nightly-db": …``); the facade's single ``InvalidInput`` stays as it was for callers."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from tdauto.errors import InvalidInput
from tdauto.intake.fields import _one
from tdauto.models import Task
from tdauto.suggest import did_you_mean

_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


def bracketed(field: str) -> str:
    """``actions.0.params.argv`` -> ``actions[0].params.argv``."""
    return _INDEX.sub(r"[\1]", field)


def problem_lines(exc: InvalidInput, data: object = None, registry: Any = None) -> list[str]:
    """``exc`` as one line per problem; with the raw ``data`` (and the action ``registry``)
    an unknown key gets the closest known one."""
    cause = exc.__cause__
    if not isinstance(cause, ValidationError) or cause.title != "Task":
        return [f"{bracketed(exc.field)}: {exc.message}"]
    lines = []
    for error in cause.errors(include_url=False, include_input=False):
        field, message = _one(error, ())
        if message.startswith("Extra inputs are not permitted"):
            loc = tuple(int(p) if p.isdigit() else p for p in field.split("."))
            message = "is not a key tdauto knows here" + did_you_mean(
                loc[-1], _known_keys(loc[:-1], data, registry)
            )
        lines.append(f"{bracketed(field)}: {message}")
    return lines


def _known_keys(path: tuple[Any, ...], data: object, registry: Any) -> list[str]:
    """The keys the model takes at ``path`` of a task (an action's params: its params model)."""
    model: Any = Task
    raw = data
    for part in path:
        action, raw = raw, _child(raw, part)
        if isinstance(part, int):
            continue
        if part == "params" and registry is not None:
            kind = action.get("type") if isinstance(action, Mapping) else None
            try:
                model = registry.get(kind).params
            except (InvalidInput, AttributeError, KeyError, TypeError):
                return []
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return []
        model = _model_in(fields[part].annotation)
    return list(getattr(model, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside ``X | None``, ``list[X]`` or ``dict[str, X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _child(value: object, part: Any) -> object:
    if isinstance(value, Mapping):
        return value.get(part)
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    return None

"""Size, depth and finiteness of raw input, measured in one walk that stops at the limit.

A definition is measured before pydantic builds anything from it, so a 33 MB task or one
nested a thousand levels is refused in the time it takes to reach the limit, never stored
(where every ``task list`` would read it back).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tdauto.errors import InvalidInput

MAX_DEPTH = 32
"""Deepest nesting of mappings and lists a definition may have (a param that is a list of
mappings is 5 levels down)."""


def field_path(path: tuple[Any, ...]) -> str:
    """``("actions", 0, "params", "x")`` -> ``actions.0.params.x`` (pydantic's spelling)."""
    return ".".join(str(part) for part in path) or "task"


def not_finite(path: tuple[Any, ...], value: float) -> InvalidInput:
    return InvalidInput(
        field_path(path), f"{value} is not a number tdauto can use; give a finite number"
    )


def _scalar_bytes(value: object) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass")) + 2
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int | float):
        return len(repr(value))
    return len(str(type(value).__name__)) + 2  # pydantic refuses or converts it


def measure(value: object, limit: int, root: tuple[Any, ...], setting: str, what: str) -> int:
    """The JSON size of ``value`` in bytes, refusing as soon as it passes ``limit`` (named
    by ``setting``), a value nested deeper than :data:`MAX_DEPTH`, and NaN or infinity.

    Shared containers (YAML aliases, Python objects used twice) count at every use, as
    they would when stored; the walk is iterative, so no input reaches the recursion limit.
    """
    total = 0
    stack: list[tuple[tuple[Any, ...], object]] = [(root, value)]
    while stack:
        path, item = stack.pop()
        if len(path) - len(root) > MAX_DEPTH:
            raise InvalidInput(
                field_path(path[: len(root) + MAX_DEPTH]),
                f"is nested more than {MAX_DEPTH} levels deep; flatten it",
            )
        if isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            for key, child in item.items():
                total += _scalar_bytes(key)
                stack.append(((*path, key), child))
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            stack.extend(((*path, index), child) for index, child in enumerate(item))
        else:
            if isinstance(item, float) and not math.isfinite(item):
                raise not_finite(path, item)
            total += _scalar_bytes(item)
        if total > limit:
            raise InvalidInput(
                field_path(root),
                f"{what} is more than {setting} ({limit}) bytes as JSON; "
                "make it smaller (keep large data in files the action reads)",
            )
    return total


def check_sizes(data: Mapping[str, Any], settings: Any) -> None:
    """The limits of a whole definition: its size, its actions, its description, each param."""
    description = data.get("description")
    if isinstance(description, str) and len(description) > settings.task_description_max:
        raise InvalidInput(
            "description",
            f"is {len(description)} characters, more than TDAUTO_TASK_DESCRIPTION_MAX "
            f"({settings.task_description_max}); shorten it",
        )
    for path, steps in _step_lists(data):
        if len(steps) > settings.task_max_actions:
            raise InvalidInput(
                field_path(path),
                f"has {len(steps)} steps, more than TDAUTO_TASK_MAX_ACTIONS "
                f"({settings.task_max_actions}); split the task in several (run_after chains them)",
            )
        for index, step in enumerate(steps):
            params = step.get("params") if isinstance(step, Mapping) else None
            if isinstance(params, Mapping):
                check_params_size((*path, index, "params"), params, settings)
    measure(data, settings.task_max_bytes, (), "TDAUTO_TASK_MAX_BYTES", "the task definition")


def check_params_size(path: tuple[Any, ...], params: Mapping[Any, Any], settings: Any) -> None:
    for key, value in params.items():
        measure(
            value, settings.param_max_bytes, (*path, key), "TDAUTO_PARAM_MAX_BYTES", "the param"
        )


def _step_lists(data: Mapping[str, Any]) -> list[tuple[tuple[Any, ...], list[Any]]]:
    """Every list of steps: ``actions``, ``on_failure`` and each action's ``on_failure``."""
    found: list[tuple[tuple[Any, ...], list[Any]]] = []
    for key in ("actions", "on_failure"):
        steps = data.get(key)
        if not isinstance(steps, list):
            continue
        found.append(((key,), steps))
        for index, step in enumerate(steps):
            nested = step.get("on_failure") if isinstance(step, Mapping) else None
            if isinstance(nested, list):
                found.append(((key, index, "on_failure"), nested))
    return found

"""Size, depth and finiteness of raw input, measured in one walk that stops at the limit.

A definition is measured before pydantic builds anything from it, so a 33 MB task or one
nested a thousand levels is refused in the time it takes to reach the limit, never stored
(where every ``task list`` would read it back).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tdauto.errors import InvalidInput

MAX_DEPTH = 32
"""Deepest nesting of mappings and lists a definition may have (a param that is a list of
mappings is 5 levels down)."""


def field_path(path: tuple[Any, ...]) -> str:
    """``("actions", 0, "params", "x")`` -> ``actions.0.params.x`` (pydantic's spelling); a
    key that is not plain printable text (a newline, a space, a dot) is quoted as Python
    would, so the error stays one line and says which key."""
    return ".".join(_part(part) for part in path) or "task"


def _part(part: Any) -> str:
    text = str(part)
    if text and text.isprintable() and " " not in text and "." not in text:
        return text
    return repr(text)


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


class _TooLarge(InvalidInput):
    """A value over its size limit (the other refusals of a walk say where they are)."""


@dataclass(frozen=True)
class Walk:
    """What one walk found: the size as JSON, and whether validation could turn a value into
    something the walk did not see (a boolean into a number, ``"nan"`` into NaN)."""

    total: int
    coercible: bool


_NUMBER_STARTS = frozenset("+-.0123456789iInN")


def _coercible(item: object) -> bool:
    if isinstance(item, bool):
        return True
    if isinstance(item, str):
        text = item.lstrip()
        if not text or text[0] not in _NUMBER_STARTS:
            return False  # float() refuses it: no number, no NaN
        try:
            return not math.isfinite(float(text))
        except ValueError:
            return False
    return not isinstance(item, int | float) and item is not None  # Decimal("NaN"), objects


def _path(nodes: list[tuple[int, Any]], index: int) -> tuple[Any, ...]:
    parts: list[Any] = []
    while index > 0:
        index, key = nodes[index]
        parts.append(key)
    return tuple(reversed(parts))


def measure(value: object, limit: int, root: tuple[Any, ...], setting: str, what: str) -> Walk:
    """The JSON size of ``value`` in bytes, refusing as soon as it passes ``limit`` (named
    by ``setting``), a value nested deeper than :data:`MAX_DEPTH`, and NaN or infinity.

    Shared containers (YAML aliases, Python objects used twice) count at every use, as
    they would when stored; the walk is iterative, so no input reaches the recursion limit.
    It keeps no paths: a value to refuse is looked for again by :func:`_located`.
    """
    total = 0
    coercible = False
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            for key, child in item.items():
                total += _scalar_bytes(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            return _located(value, limit, root, setting, what)
        else:
            total += _scalar_bytes(item)
            coercible = coercible or _coercible(item)
        if depth > MAX_DEPTH or total > limit:
            return _located(value, limit, root, setting, what)
    return Walk(total, coercible)


def _located(value: object, limit: int, root: tuple[Any, ...], setting: str, what: str) -> Walk:
    """:func:`measure` again, keeping each value's path (as parent links): run only once
    the quick walk found something to refuse, to say where it is."""
    total = 0
    coercible = False
    nodes: list[tuple[int, Any]] = [(0, None)]  # node -> (parent node, key in the parent)
    stack: list[tuple[object, int, int]] = [(value, 0, 0)]  # (item, node, depth)
    while stack:
        item, node, depth = stack.pop()
        if depth > MAX_DEPTH:
            where = _path(nodes, node)[:MAX_DEPTH]
            raise InvalidInput(
                field_path((*root, *where)),
                f"is nested more than {MAX_DEPTH} levels deep; flatten it",
            )
        if isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            for key, child in item.items():
                total += _scalar_bytes(key)
                nodes.append((node, key))
                stack.append((child, len(nodes) - 1, depth + 1))
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            for index, child in enumerate(item):
                nodes.append((node, index))
                stack.append((child, len(nodes) - 1, depth + 1))
        else:
            if isinstance(item, float) and not math.isfinite(item):
                raise not_finite((*root, *_path(nodes, node)), item)
            total += _scalar_bytes(item)
            coercible = coercible or _coercible(item)
        if total > limit:
            raise _TooLarge(
                field_path(root),
                f"{what} is more than {setting} ({limit}) bytes as JSON; "
                "make it smaller (keep large data in files the action reads)",
            )
    return Walk(total, coercible)


def check_sizes(data: Mapping[str, Any], settings: Any) -> Walk:
    """The limits of a whole definition: its size, its actions, its description, each param
    (a param over its own limit is named rather than the whole definition)."""
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
    try:
        walk = measure(
            data, settings.task_max_bytes, (), "TDAUTO_TASK_MAX_BYTES", "the task definition"
        )
    except _TooLarge:
        _check_each_param(data, settings)
        raise
    if walk.total > settings.param_max_bytes:  # else no param can be over its limit
        _check_each_param(data, settings)
    return walk


def _check_each_param(data: Mapping[str, Any], settings: Any) -> None:
    for path, steps in _step_lists(data):
        for index, step in enumerate(steps):
            params = step.get("params") if isinstance(step, Mapping) else None
            if isinstance(params, Mapping):
                check_params_size((*path, index, "params"), params, settings)


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

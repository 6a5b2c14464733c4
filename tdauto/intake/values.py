"""Values pydantic accepts but a user never means: a boolean read as a number (``hour:
true`` is 1), a number that is not finite (``deadline: NaN`` would mean "no limit"), and an
identifier with a control character in it (an ESC or a bidi override that rewrites the
terminal a name is printed on)."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from typing import Any

from tdauto.errors import InvalidInput
from tdauto.intake.limits import field_path, not_finite

_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def check_identifier(field: str, value: object, what: str) -> None:
    """Refuse a control, format (bidi, zero-width) or line/paragraph separator character."""
    if not isinstance(value, str):
        return
    for position, char in enumerate(value, start=1):
        if unicodedata.category(char) in _CONTROL_CATEGORIES:
            raise InvalidInput(
                field,
                f"has the control character U+{ord(char):04X} at character {position}; "
                f"{what} must be printable text: remove it",
            )


def check_identifiers(data: Mapping[str, Any]) -> None:
    """The names a user gives: the task's, its upstream's, its lock's, its actions' types."""
    check_identifier("name", data.get("name"), "a task name")
    check_identifier("lock", data.get("lock"), "a lock name")
    run_after = data.get("run_after")
    if isinstance(run_after, Mapping):
        check_identifier("run_after.task", run_after.get("task"), "a task name")
    for key in ("actions", "on_failure"):
        steps = data.get(key)
        for index, step in enumerate(steps if isinstance(steps, list) else []):
            if not isinstance(step, Mapping):
                continue
            check_identifier(f"{key}.{index}.type", step.get("type"), "an action type")
            nested = step.get("on_failure")
            for inner, sub in enumerate(nested if isinstance(nested, list) else []):
                if isinstance(sub, Mapping):
                    check_identifier(
                        f"{key}.{index}.on_failure.{inner}.type", sub.get("type"), "an action type"
                    )


def check_parsed(raw: object, parsed: object, path: tuple[Any, ...] = ()) -> None:
    """Compare what was given with what validation made of it, side by side: a boolean given
    where a number was taken, or a value that became NaN or infinity, is refused at its path.
    """
    stack: list[tuple[tuple[Any, ...], object, object]] = [(path, raw, parsed)]
    while stack:
        where, given, made = stack.pop()
        if isinstance(made, float) and not math.isfinite(made):
            raise not_finite(where, made)
        if isinstance(given, bool) and isinstance(made, int | float) and not isinstance(made, bool):
            raise InvalidInput(
                field_path(where),
                f"expected a number, got {str(given).lower()}; write the number itself",
            )
        if isinstance(given, Mapping) and isinstance(made, Mapping):
            stack.extend(
                ((*where, key), value, made[key]) for key, value in given.items() if key in made
            )
        elif isinstance(given, list | tuple) and isinstance(made, list | tuple):
            stack.extend(
                ((*where, index), pair[0], pair[1])
                for index, pair in enumerate(zip(given, made, strict=False))
            )
        elif isinstance(made, Mapping | list | tuple):
            # given in another shape (a model, a string pydantic parsed): finite numbers only
            stack.extend(_children(where, made))


def _children(where: tuple[Any, ...], made: object) -> list[tuple[tuple[Any, ...], None, object]]:
    if isinstance(made, Mapping):
        return [((*where, key), None, value) for key, value in made.items()]
    if isinstance(made, list | tuple):
        return [((*where, index), None, value) for index, value in enumerate(made)]
    return []

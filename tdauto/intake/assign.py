"""``--set key=value`` on a task's definition (``tdauto task update``): a dotted key
(``schedule_config.hour``, ``actions.0.params.older_than``) and a value read as YAML 1.2 by
the strict reader of task files (``3`` a number, ``false`` a boolean, ``7d`` text).

A key the definition does not have is refused by name, with the nearest one (difflib), before
anything is validated or stored. Only an action's ``params`` take new keys: their action's
model checks them when the task is validated again. A part that is unset (``retry.max`` while
``retry`` is null) starts as an empty mapping, which its model then checks."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable
from typing import Any

from tdauto.errors import InvalidInput
from tdauto.intake.files import loads_yaml

_OPEN = {"params"}
"""Mappings whose keys are the user's (an action's model checks them), not a model's fields."""


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` -> ``(["a", "b"], 3)``."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise InvalidInput(
            "--set",
            f"{text!r} is not KEY=VALUE; write e.g. enabled=false or schedule_config.hour=3",
        )
    return parts, loads_yaml(raw, f"--set {key.strip()}")


def assign(data: dict[str, Any], assignments: Iterable[str]) -> tuple[dict[str, Any], set[str]]:
    """A copy of ``data`` with each ``KEY=VALUE`` applied in order, and the top-level keys
    they touched."""
    result = copy.deepcopy(data)
    touched: set[str] = set()
    for text in assignments:
        parts, value = parse_assignment(text)
        _set(result, parts, value)
        touched.add(parts[0])
    return result, touched


def _set(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node: Any = data
    unset = False  # under a part that was null: its model checks the keys
    for depth, part in enumerate(parts):
        where = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        parent = parts[depth - 1] if depth else ""
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise InvalidInput(
                    f"--set {where}", f"there are {len(node)} (numbered from 0); use one of them"
                )
            index = int(part)
            if last:
                node[index] = value
            else:
                node, unset = _child(node, index, where)
            continue
        if part not in node and parent not in _OPEN and not unset:
            near = difflib.get_close_matches(part, [str(k) for k in node], n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"the keys there: {', '.join(node)}"
            raise InvalidInput(f"--set {where}", f"unknown key {part!r}; {hint}")
        if last:
            node[part] = value
        else:
            node, unset = _child(node, part, where)


def _child(node: Any, key: Any, where: str) -> tuple[Any, bool]:
    """The mapping or list under ``key`` (an empty mapping for null), and whether it was null."""
    if node.get(key) is None if isinstance(node, dict) else node[key] is None:
        node[key] = {}
        return node[key], True
    child = node[key]
    if not isinstance(child, dict | list):
        raise InvalidInput(
            f"--set {where}", f"is {child!r}, not a mapping or list; set {where}=VALUE instead"
        )
    return child, False

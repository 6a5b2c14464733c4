"""Reading task files (``tdauto apply -f``, ``task create -f``) strictly; a parse error
names its place as ``FILE:LINE:COL`` (YAML marks, ``JSONDecodeError``), as compilers do.

JSON: a key given twice is refused (``json`` would keep the last one silently). YAML: a safe
loader with YAML 1.2's scalars (``yes``, ``no``, ``on`` and ``off`` are strings; ``010``,
which YAML 1.1 reads as octal eight and YAML 1.2 as ten, is refused), duplicate keys refused,
and aliases held to a budget: a 500-byte file whose aliases nest nine deep expands to
hundreds of millions of values (it grew ``task create`` to 2.2 GB), so one whose aliases add
more than :data:`ALIAS_BUDGET` is refused before anything is built from it. NaN and infinity
are read as numbers and refused by the facade, which names their field.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from tdauto.errors import InvalidInput
from tdauto.intake.limits import field_path

ALIAS_BUDGET = 10_000
"""Values a YAML file's aliases may add in all, each use counting the whole anchored value."""

_LONG_INTEGER = "has an integer of more than 4300 digits; write a shorter number"
_MERGE = "tag:yaml.org,2002:merge"
_BOOL, _INT, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float"))


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core-schema scalars and unique keys."""

    source = "task file"

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: PyYAML's own error says so
            if first is not None:
                lines = f"line {line}" if first == line else f"lines {first} and {line}"
                where = f"{lines} of {self.source}"
                raise InvalidInput(field_path((key,)), f"is given twice ({where}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Node) -> int:
        text = str(self.construct_scalar(node))  # type: ignore[arg-type]
        if text.lower().startswith(("0o", "0x", "-0o", "-0x", "+0o", "+0x")):
            return int(text, 0)
        digits = text.lstrip("+-")
        if len(digits) > 1 and digits.startswith("0"):
            # YAML 1.1 (PyYAML, most tools) reads 010 as octal 8, YAML 1.2 as ten: refused,
            # since the two readings of one file would schedule different hours
            octal = f"octal {int(digits, 8)}" if set(digits) <= set("01234567") else "an error"
            raise InvalidInput(
                f"{self.source} line {node.start_mark.line + 1}",
                f"{text} is {octal} in YAML 1.1 and {int(digits, 10)} in YAML 1.2; write "
                f"{int(digits, 10)} (or 0o{digits.lstrip('0') or '0'} for octal)",
            )
        return int(text, 10)


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_StrictLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_StrictLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
_StrictLoader.add_constructor(_INT, _StrictLoader.construct_yaml_int)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_aliases(root: Node, source: str) -> None:
    """Count the values the document expands to (an anchored value once per use) against
    the values it spells out; refuse a cycle (``&a [*a]``) and growth beyond the budget."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise InvalidInput(source, "an alias refers to the value that holds it; remove it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    added = sizes[id(root)] - len(sizes)
    if added > ALIAS_BUDGET:
        raise InvalidInput(
            source,
            f"its aliases (*name) expand to {added} more values, more than {ALIAS_BUDGET}; "
            "write the values out or use fewer aliases",
        )


def loads_yaml(text: str, source: str = "task file") -> Any:
    try:
        loader = _StrictLoader(text)  # its reader refuses characters YAML does not allow
    except yaml.reader.ReaderError as exc:
        raise InvalidInput(
            source,
            f"has the character U+{exc.character:04X} (at {exc.position}), which YAML "
            "does not allow; remove it or write it as an escape in a double-quoted string",
        ) from None
    loader.source = source
    with _refusing_the_unreadable(source):
        return _yaml_document(loader, source)


def _yaml_document(loader: _StrictLoader, source: str) -> Any:
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(node, source)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise InvalidInput(where, f"not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(source, f"is not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()


def _unique(source: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        mapping: dict[str, Any] = {}
        for key, value in items:
            if key in mapping:
                raise InvalidInput(
                    field_path((key,)), f"is given twice in one mapping of {source}; keep one"
                )
            mapping[key] = value
        return mapping

    return pairs


def loads_json(text: str, source: str = "task file") -> Any:
    with _refusing_the_unreadable(source):
        try:
            return json.loads(text, object_pairs_hook=_unique(source))
        except json.JSONDecodeError as exc:
            where = f"{source}:{exc.lineno}:{exc.colno}"
            raise InvalidInput(where, f"not valid JSON: {exc.msg}") from None


@contextlib.contextmanager
def _refusing_the_unreadable(source: str) -> Iterator[None]:
    """What either parser may raise on input it cannot build, as one line about ``source``."""
    try:
        yield
    except RecursionError:
        raise InvalidInput(source, "is nested too deeply; flatten it") from None
    except InvalidInput:
        raise
    except ValueError:  # an integer of more than 4300 digits
        raise InvalidInput(source, _LONG_INTEGER) from None


def read_task_file(path: Path, max_bytes: int) -> list[dict[str, Any]]:
    """The task definitions of a JSON (``.json``) or YAML file: one mapping or a list."""
    source = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise InvalidInput(source, f"cannot be read: {exc.strerror}") from None
    if len(raw) > max_bytes:
        raise InvalidInput(
            source,
            f"is more than TDAUTO_TASK_FILE_MAX_BYTES ({max_bytes}) bytes; split it into "
            "several files",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(source, f"is not UTF-8 text (byte {exc.start})") from None
    data = loads_json(text, source) if path.suffix == ".json" else loads_yaml(text, source)
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(item, dict) for item in items):
        raise InvalidInput(source, "expected a task (a mapping) or a list of tasks")
    return items

"""``tdauto apply``: bring the stored tasks to what a set of task files defines, as kubectl
applies manifests, so a team keeps its tasks in git.

The plan is computed first, below the CLI (the facade's ``AutomationSystems.apply`` calls
:func:`make_plan` and :func:`carry_out`, so an HTTP API gets the same): every file parsed and
every task validated before anything is stored; then one :class:`Step` per task, created,
updated (its changed fields), unchanged, or pruned. Tasks ``apply`` writes carry the owner
label :data:`OWNER_LABEL`; ``prune`` deletes only those, ``prune_all`` any task not in the
files. :func:`export_yaml` writes the stored tasks back as a file that applies unchanged.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tdauto.errors import InvalidInput
from tdauto.intake import read_task_file
from tdauto.intake.problems import problem_lines
from tdauto.models import Task
from tdauto.redact import REDACTED, redact

OWNER_LABEL = "tdauto/owner"
OWNER = "apply"
SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Entry:
    """One task definition as given: its file (or other source) and its place there."""

    source: str
    index: int
    definition: Any

    def where(self) -> str:
        name = self.definition.get("name") if isinstance(self.definition, Mapping) else None
        named = f" {_quoted(name)}" if isinstance(name, str) else ""
        return f"{self.source}: tasks[{self.index}]{named}"


@dataclass(frozen=True)
class Step:
    """What apply does (or, with ``dry_run``, would do) to one task."""

    name: str
    verb: str  # created, updated, unchanged or pruned
    fields: tuple[str, ...] = ()
    diff: str = ""
    task: Task | None = None  # the task as the files define it (or the one pruned)
    current: Task | None = None  # the task as stored before

    def line(self) -> str:
        changed = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.name}: {self.verb}{changed}"


@dataclass
class Plan:
    """The steps of one apply and the problems that refuse it (one line each)."""

    steps: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stored: dict[str, Task] = field(default_factory=dict)  # by name, once carried out

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for step in self.steps:
            found[step.verb] = found.get(step.verb, 0) + 1
        return found


class InvalidTasks(InvalidInput):
    """Task files that cannot be applied: every problem, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("tasks", "; ".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


def entries_from_paths(
    paths: Iterable[Path], max_bytes: int, data_dir: Path | None = None
) -> tuple[list[Entry], list[str]]:
    """The definitions of files and folders (their ``.yaml``, ``.yml`` and ``.json`` files,
    recursively, in name order; hidden folders such as ``.git`` and the store's ``data_dir``
    left out), and one line per file that cannot be read."""
    entries: list[Entry] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if _task_file(p, path, data_dir))
            if not files:
                problems.append(f"{path}: has no .yaml, .yml or .json file; give task files")
        elif path.exists():
            files = [path]
        else:
            problems.append(f"{path}: no such file or folder")
            files = []
        for file in files:
            try:
                items = read_task_file(file, max_bytes)
            except InvalidInput as exc:
                problems.append(str(exc))
                continue
            entries.extend(Entry(str(file), i, item) for i, item in enumerate(items))
    return entries, problems


def _task_file(path: Path, root: Path, data_dir: Path | None) -> bool:
    if path.suffix not in SUFFIXES or not path.is_file():
        return False
    if any(part.startswith(".") for part in path.relative_to(root).parts):
        return False
    return data_dir is None or not path.resolve().is_relative_to(data_dir.resolve())


def owned(definition: Any) -> Any:
    """``definition`` with the owner label added (left as it is when it is not a mapping)."""
    if not isinstance(definition, Mapping):
        return definition
    labels = definition.get("labels") or {}
    if not isinstance(labels, Mapping):
        return definition
    return {**definition, "labels": {**labels, OWNER_LABEL: OWNER}}


def make_plan(
    entries: Sequence[Entry],
    check: Callable[[Mapping[str, Any]], Task],
    current: Sequence[Task],
    registry: Any = None,
    problems: Sequence[str] = (),
    how: Mapping[str, bool] | None = None,
) -> Plan:
    """The plan for ``entries`` against the ``current`` tasks; ``check`` validates one
    definition as the facade would (raising ``InvalidInput``); ``how`` may say ``prune``
    (apply's own tasks not in the files are deleted) or ``prune_all`` (any such task)."""
    how = how or {}
    prune_all = bool(how.get("prune_all"))
    prune = prune_all or bool(how.get("prune"))
    plan = Plan(problems=list(problems))
    wanted: dict[str, tuple[Entry, Task]] = {}
    by_name = {t.name: t for t in current}
    for entry in entries:
        entry = _with_hidden_kept(entry, by_name)
        task = _checked(entry, check, registry, plan.problems)
        if task is None:
            continue
        seen = wanted.get(task.name)
        if seen is not None and seen[1].definition() != task.definition():
            plan.problems.append(
                f"{entry.where()}: name: {task.name!r} is also the name of {seen[0].where()}, "
                "a different task; rename one"
            )
            continue
        wanted.setdefault(task.name, (entry, task))
    for entry, task in wanted.values():
        upstream = task.run_after.task if task.run_after else None
        if upstream is not None and upstream not in wanted and upstream not in by_name:
            plan.problems.append(
                f"{entry.where()}: run_after.task: no task is named {upstream!r}; "
                "define it in the files or create it first"
            )
    for _, task in _upstream_first([t for _, t in wanted.values()]):
        plan.steps.append(_step(task, by_name.get(task.name)))
    if prune and not plan.problems:  # a file not read would have its tasks pruned
        for old in current:
            if old.name not in wanted and (prune_all or old.labels.get(OWNER_LABEL) == OWNER):
                plan.steps.append(Step(old.name, "pruned", task=old, current=old))
    return plan


def _with_hidden_kept(entry: Entry, by_name: Mapping[str, Task]) -> Entry:
    """``entry`` with each ``***`` (a secret an export hid) replaced by the stored task's value
    at the same place: applying an export back must never store ``***`` over a secret."""
    name = entry.definition.get("name") if isinstance(entry.definition, Mapping) else None
    stored = by_name.get(name) if isinstance(name, str) else None
    if stored is None:
        return entry
    kept = _keep_hidden(entry.definition, stored.model_dump(mode="json"))
    return Entry(entry.source, entry.index, kept)


def _keep_hidden(given: Any, stored: Any) -> Any:
    if given == REDACTED and stored is not None and stored != REDACTED:
        return stored
    if isinstance(given, Mapping):
        old = stored if isinstance(stored, Mapping) else {}
        return {k: _keep_hidden(v, old.get(k)) for k, v in given.items()}
    if isinstance(given, list):
        old_items = stored if isinstance(stored, list) else []
        return [
            _keep_hidden(v, old_items[i] if i < len(old_items) else None)
            for i, v in enumerate(given)
        ]
    return given


def _checked(
    entry: Entry, check: Callable[[Mapping[str, Any]], Task], registry: Any, out: list[str]
) -> Task | None:
    if not isinstance(entry.definition, Mapping):
        out.append(f"{entry.where()}: expected a task (a mapping of its fields)")
        return None
    try:
        return check(owned(entry.definition))
    except InvalidInput as exc:
        out.extend(
            f"{entry.where()}: {line}" for line in problem_lines(exc, entry.definition, registry)
        )
        return None


def _upstream_first(tasks: list[Task]) -> list[tuple[int, Task]]:
    """``tasks`` ordered so that a ``run_after`` upstream in the files is written first."""
    names = {t.name for t in tasks}
    done: set[str] = set()
    ordered: list[tuple[int, Task]] = []
    pending = list(tasks)
    while pending:
        ready = [
            t
            for t in pending
            if not t.run_after or t.run_after.task not in names or t.run_after.task in done
        ] or pending[:1]  # a loop: the store refuses it, naming the tasks
        for task in ready:
            pending.remove(task)
            done.add(task.name)
            ordered.append((len(ordered), task))
    return ordered


def _step(task: Task, current: Task | None) -> Step:
    if current is None:
        return Step(task.name, "created", diff=_diff(None, task), task=task)
    before, after = _compared(current), _compared(task)
    fields = tuple(key for key in after if before.get(key) != after[key])
    if not fields:
        return Step(task.name, "unchanged", task=task, current=current)
    diff = _diff(current, task)
    return Step(task.name, "updated", fields, diff, task=task, current=current)


def _compared(task: Task) -> dict[str, Any]:
    """The definition without the owner label: a task made otherwise that the files define
    as it is stays unchanged (and not apply's, so never pruned); a change makes it apply's."""
    data = task.definition()
    data["labels"] = {k: v for k, v in data["labels"].items() if k != OWNER_LABEL}
    return data


def definition_yaml(task: Task) -> str:
    """A task as apply-able YAML: what the user defined, defaults left out."""
    data = task.model_dump(
        mode="json",
        exclude_defaults=True,
        exclude={"id", "created_at", "updated_at", "next_run_at", "last_run_at"},
    )
    for key in ("name", "type", "schedule"):  # always written, even when a default
        data.setdefault(key, task.model_dump(mode="json")[key])
    ordered = {key: data[key] for key in Task.model_fields if key in data}
    return yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True)


def _diff(before: Task | None, after: Task) -> str:
    """A unified diff of the YAML of the stored and the applied definition, secrets hidden."""
    old = _redacted_yaml(before).splitlines(keepends=True) if before else []
    new = _redacted_yaml(after).splitlines(keepends=True)
    label = after.name
    lines = difflib.unified_diff(old, new, f"{label} (stored)", f"{label} (files)")
    return "".join(lines)


def _redacted_yaml(task: Task) -> str:
    data = redact(yaml.safe_load(definition_yaml(task)))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def carry_out(
    plan: Plan,
    create: Callable[[Mapping[str, Any]], Task],
    update: Callable[[str, dict[str, Any]], Task],
    delete: Callable[[str], None],
) -> None:
    """Write the plan's steps (the valid ones, when ``partial`` let problems through)."""
    for step in plan.steps:
        if step.verb == "created" and step.task is not None:
            plan.stored[step.name] = create(step.task.definition())
        elif step.verb == "updated" and step.task is not None and step.current is not None:
            plan.stored[step.name] = update(step.current.id, step.task.definition())
        elif step.verb == "unchanged" and step.current is not None:
            plan.stored[step.name] = step.current
        elif step.verb == "pruned" and step.current is not None:
            delete(step.current.id)


def export_yaml(tasks: Iterable[Task]) -> str:
    """The stored tasks as one apply-able YAML file (a list), in name order; values under
    secret-looking keys are ``***``, as everywhere tdauto shows a task (``tdauto.redact``)."""
    docs = redact([yaml.safe_load(definition_yaml(t)) for t in sorted(tasks, key=lambda t: t.name)])
    return yaml.safe_dump(docs, sort_keys=False, allow_unicode=True) if docs else "[]\n"


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'

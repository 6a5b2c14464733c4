"""What the running workers can run, and why a task or a waiting run will not get done.

Each worker advertises, with its load samples (``sampler.py``), the settings that decide
what it may run (its ``TDAUTO_SHELL_ALLOW``, ``TDAUTO_UPDATE_ALLOW``, ``TDAUTO_CHECK_ALLOW``,
``TDAUTO_TASK_SECRETS``) and the actions it has registered (built-ins and plugins). A task is
checked against them by validating each action's params again under a worker's advertised
settings, so every check an action makes at creation (a program in an argv, a secret's
variable) is asked as that worker would answer it; the CLI's own variables may differ from
the workers'. The facade turns this into warnings (``AutomationSystems.worker_warnings``,
``waiting_hint``), which ``task create``, ``up`` and ``task run`` print.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tdauto.actions.registry import Registry
from tdauto.engine.executions import CONTROL_QUEUE, queue_for, resource_class_of
from tdauto.errors import TdautoError
from tdauto.intake.fields import field_error
from tdauto.intake.limits import field_path
from tdauto.models import ActionSpec, Execution, ExecutionStatus, Task
from tdauto.settings import Settings

KEY = "runs"  # where a sample holds what its worker advertises
FIRST_SAMPLE_S = 5.0  # a pool that answered a ping has published its first sample by then
ADVERTISED = ("shell_allow", "update_allow", "check_allow", "task_secrets")
_WAITING = {ExecutionStatus.PENDING, ExecutionStatus.QUEUED, ExecutionStatus.RETRYING}


def advertised(settings: Settings, actions: Iterable[str]) -> dict[str, Any]:
    """What a worker publishes with each sample: its registered actions and the settings
    that decide what they may run (lists of names and patterns, never a secret's value)."""
    return {"actions": sorted(actions), **{f: list(getattr(settings, f)) for f in ADVERTISED}}


@dataclass(frozen=True)
class Worker:
    """A live pool, as its latest sample shows it."""

    node: str  # pool@host
    pool: str
    runs: dict[str, Any] | None  # None: a worker that advertises nothing (an older tdauto)


def live_workers(samples: Iterable[dict[str, Any]]) -> list[Worker]:
    """The pools whose samples have not expired."""
    found = []
    for sample in samples:
        runs = sample.get(KEY)
        pool = str(sample.get("pool"))
        node = f"{pool}@{sample.get('host')}"
        found.append(Worker(node, pool, runs if isinstance(runs, dict) else None))
    return sorted(found, key=lambda w: w.node)


def _consumers(queue: str, workers: list[Worker]) -> list[Worker]:
    """The workers reading ``queue``: every pool reads the control queue, and each pool the
    shared queue of its own class."""
    if queue == CONTROL_QUEUE:
        return workers
    return [w for w in workers if f"tdauto.{w.pool}" == queue]


def _steps(task: Task) -> Iterator[tuple[tuple[Any, ...], ActionSpec]]:
    """Every step a run of ``task`` may send, with its field path."""
    for i, spec in enumerate(task.actions):
        yield ("actions", i), spec
        for j, step in enumerate(spec.on_failure):
            yield ("actions", i, "on_failure", j), step
    for j, step in enumerate(task.on_failure):
        yield ("on_failure", j), step


def _refusal(
    spec: ActionSpec, where: tuple[Any, ...], worker: Worker, registry: Registry, base: Settings
) -> str | None:
    """Why ``worker`` would refuse ``spec``, in one line; None when it would run it (or
    does not say what it runs)."""
    runs = worker.runs
    if runs is None:
        return None
    if spec.type not in runs.get("actions", []):
        return (
            f"action {spec.type!r} is not registered there; add the module that defines it "
            "to that worker's TDAUTO_PLUGINS"
        )
    settings = base.model_copy(update={f: list(runs.get(f, [])) for f in ADVERTISED})
    context = {"registry": registry, "settings": settings}
    try:
        registry.parse_params(spec.type, dict(spec.params), context)
    except ValidationError as exc:
        return str(field_error(exc, (*where, "params")))
    except (TdautoError, ValueError) as exc:
        return str(exc)
    return None


def task_warnings(
    task: Task, samples: Iterable[dict[str, Any]], registry: Registry, settings: Settings
) -> list[str]:
    """One line per step of ``task`` that the live workers cannot run: none reads its
    queue, or the workers that do would refuse it. No live worker at all gives none (the
    system is not up yet; ``waiting_hint`` says so when a run waits)."""
    workers = live_workers(samples)
    if not workers:
        return []
    lines = []
    for where, spec in _steps(task):
        klass = resource_class_of(spec, registry, task.resources)
        queue = queue_for(klass)
        label = f"task {task.name!r}: {field_path(where)} ({spec.type})"
        serving = _consumers(queue, workers)
        if not serving:
            lines.append(
                f"{label}: no worker is consuming {queue}, so it will stay QUEUED; start one "
                f"(`tdauto up`, or `tdauto worker {klass.value}`)"
            )
            continue
        refused = [
            (w, why) for w in serving if (why := _refusal(spec, where, w, registry, settings))
        ]
        if refused:
            worker, why = refused[0]
            who = (
                "no running worker"
                if len(refused) == len(serving)
                else f"{len(refused)} of the {len(serving)} workers"
            )
            lines.append(f"{label}: {who} on {queue} can run it; {worker.node}: {why}")
    return lines


def waiting_hint(execution: Execution, samples: Iterable[dict[str, Any]]) -> str | None:
    """Why ``execution`` is still waiting, when the reason is that no worker reads the queue
    its next step is on; None otherwise (it may simply be busy)."""
    if execution.status not in (ExecutionStatus.PENDING, ExecutionStatus.QUEUED):
        return None
    queue = CONTROL_QUEUE
    if execution.status is ExecutionStatus.QUEUED:
        step = next((a for a in execution.actions if a.status in _WAITING), None)
        if step is None or step.resource_class is None:
            return None
        queue = queue_for(step.resource_class)
    if _consumers(queue, live_workers(samples)):
        return None
    start = "`tdauto up`"
    if queue != CONTROL_QUEUE:
        start += f", or `tdauto worker {queue.removeprefix('tdauto.')}`"
    return (
        f"no worker is consuming {queue}: the run stays {execution.status.value} until one "
        f"does ({start})"
    )

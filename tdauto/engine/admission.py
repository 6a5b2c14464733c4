"""Overlap policy, ``max_concurrent`` and conflict locks: may this execution start now?

An execution is *active* from admission until it ends. The store keeps the active sets and
admits atomically (``Store.admit``); this module applies the task's policy when admission is
refused, and hands freed places to WAITING executions when an execution ends.

Policies (``Task.overlap``), when the task is at its limit or its ``lock`` is held:

- ``skip`` (default): the new run ends SKIPPED, with the reason.
- ``queue``: the new run WAITS (one buffered); a further one is SKIPPED.
- ``allow``: no limit of its own unless ``max_concurrent`` is set; over it, runs WAIT.
- ``replace``: the task's own active runs are CANCELLED and the new one starts; a lock held
  by another task's run is never broken: then it WAITS.

Admission also heals itself: a blocker whose execution already ended (an end whose release
was lost with a crashed process) is released and admission is tried again.
"""

from __future__ import annotations

from enum import Enum

from tdauto.engine.lifecycle import admit_live, complete
from tdauto.engine.runtime import Runtime
from tdauto.models import Execution, ExecutionStatus, Task


class Decision(Enum):
    ADMITTED = "admitted"
    WAITING = "waiting"
    SKIPPED = "skipped"


def decide(rt: Runtime, ex: Execution, task: Task) -> tuple[Decision, str | None]:
    """Admit ``ex`` under ``task``'s policy; returns the decision and, if not admitted, why."""
    blockers = admit_live(rt, ex, task)
    if not blockers:
        return Decision.ADMITTED, None
    own = [b for b in blockers if b.task_id == task.id]
    others = [b for b in blockers if b.task_id != task.id]
    reason = _reason(task, own, others)
    if task.overlap == "replace" and own and not others:
        for blocker in own:
            complete(rt, blocker.id, ExecutionStatus.CANCELLED, f"replaced by run {ex.id}")
        if not admit_live(rt, ex, task):
            return Decision.ADMITTED, None
        return Decision.WAITING, reason
    if task.overlap == "skip":
        return Decision.SKIPPED, reason
    if task.overlap == "queue":
        waiting = rt.store.list_executions(task.id, ExecutionStatus.WAITING, limit=None)
        if any(w.id != ex.id for w in waiting):
            return Decision.SKIPPED, f"{reason}; one run is already queued"
    return Decision.WAITING, reason


def _reason(task: Task, own: list[Execution], others: list[Execution]) -> str:
    parts = []
    if own:
        ids = ", ".join(b.id for b in own)
        parts.append(f"{len(own)} run(s) of {task.name!r} still active ({ids})")
    if others:
        names = ", ".join(f"{b.task_name!r} ({b.id})" for b in others)
        parts.append(f"lock {task.lock!r} held by {names}")
    return "; ".join(parts) + f" [overlap={task.overlap}]"

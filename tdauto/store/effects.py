"""``Effects``: the bookkeeping that goes with one execution update, written in the same step.

A state change of an action rarely comes alone: starting an attempt sets its lease, ending
it takes the lease, an execution that ends gives back its admission place, and the action's
log gets its last lines. Written one by one, each is a round trip to Redis; carried by the
update as ``Effects``, the Redis store applies them in the same Lua call as the record's
compare-and-set (the log in the same pipeline), and the file store under the same lock. The
engine's hot path thus costs one write per transition.

A mutation passed to ``Store.update_execution`` may return an ``Effects``; the store applies
it only when the update is written (a mutation re-run after a conflict returns its effects
afresh), and fills in the read-backs (``waiting``, ``dependents``) that were asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tdauto.models import Execution

if TYPE_CHECKING:
    from tdauto.store.backend import RollupDelta

Outbox = Callable[[Execution, str], list[tuple[str, str]]]
"""``outbox(execution, record_json)``: the messages (Redis list, payload) that announce what a
write sends (a run's first action, the next action), made just before it is written
(``record_json`` is the record as it will be stored), for the store to push in the same step
(``tdauto.engine.outbox``). Only a store whose ``pushes_messages`` is True takes one."""


@dataclass
class Effects:
    """Writes and read-backs applied with an execution update (times are epoch seconds)."""

    set_timers: list[tuple[str, str, float]] = field(default_factory=list)
    """``(timer, member, due_ts)``: ``Store.timer_set`` of each."""
    take_timers: list[tuple[str, str]] = field(default_factory=list)
    """``(timer, member)``: ``Store.timer_take`` of each."""
    release: tuple[str, str | None] | None = None
    """``(task_id, lock)``: ``Store.release`` of the execution's admission place."""
    log: str = ""
    """Text for ``Store.append_log`` of the execution (capped like any append)."""
    rollup: RollupDelta | None = None
    """``Store.add_rollup`` of this, counted exactly once: only if the update is written."""
    count_waiting: bool = False
    """Read back how many executions are WAITING, into ``waiting``."""
    dependents_of: str | None = None
    """Read back ``Store.dependents`` of this task name, into ``dependents``."""
    waiting: int | None = None
    """Filled by the store when ``count_waiting`` was asked; None when it cannot tell."""
    dependents: list[str] | None = None
    """Filled by the store when ``dependents_of`` was asked."""
    outbox: Outbox | None = None
    """Messages pushed with the record, and only if it is written (``Outbox``); asked anew
    for each attempt of a compare-and-set, as the record it carries changes."""

    def merge(self, other: Effects | None) -> Effects:
        """Both sets of writes (this one's read-backs kept, ``other``'s added)."""
        if other is None:
            return self
        return Effects(
            set_timers=[*self.set_timers, *other.set_timers],
            take_timers=[*self.take_timers, *other.take_timers],
            release=other.release or self.release,
            log=self.log + other.log,
            rollup=other.rollup or self.rollup,
            count_waiting=self.count_waiting or other.count_waiting,
            dependents_of=other.dependents_of or self.dependents_of,
        )


Mutation = Callable[[Execution], "Effects | None"]
"""What ``Store.update_execution`` applies: edits the execution in place, and may return the
``Effects`` to write with it."""

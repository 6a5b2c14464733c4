"""Misfire planning: what to do with slots that passed while no scheduler fired them.

Pure: takes the due slot, the time now and a way to step to the next slot; reads no clock.

Rules (per task):

- One slot passed and it is at most ``misfire_grace`` seconds late: an ordinary run.
- Otherwise the scheduler was away (several slots passed, or the one is later than the
  grace). The task's ``misfire`` policy decides:

  - ``run_once`` (default): one catch-up run now, for the latest slot; every other passed
    slot is recorded MISSED (coalesced into that run).
  - ``run_all``: a catch-up run for each of the latest ``max_catchup`` slots; older ones
    are recorded MISSED.
  - ``skip``: no run; every passed slot is recorded MISSED.

So ``skip`` with a grace is a deadline ("do not start the 02:00 backup after 08:00"), and no
slot ever vanishes without a record. At most ``MAX_SCAN`` passed slots are looked at (an
every-second task that was down for a day); the rest are counted in ``dropped``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

MAX_SCAN = 10_000
MAX_MISSED_RECORDS = 1_000


@dataclass
class MisfirePlan:
    """Slots to run (oldest first) and slots to record MISSED with their reason."""

    run: list[float] = field(default_factory=list)
    missed: list[tuple[float, str]] = field(default_factory=list)
    catchup: bool = False
    last_slot_ts: float = 0.0
    dropped: int = 0
    next_ts: float | None = None  # the first slot after now (valid when next_known)
    next_known: bool = False


def passed_slots(
    due_ts: float, now_ts: float, step: Callable[[float], float | None]
) -> tuple[list[float], bool, float | None]:
    """Every slot from ``due_ts`` up to ``now_ts`` (at most MAX_SCAN), whether the list was
    cut, and the first slot after ``now_ts`` when it was found on the way (None otherwise)."""
    slots = [due_ts]
    while len(slots) < MAX_SCAN:
        nxt = step(slots[-1])
        if nxt is None or nxt > now_ts:
            return slots, False, nxt
        slots.append(nxt)
    nxt = step(slots[-1])
    cut = nxt is not None and nxt <= now_ts
    return slots, cut, None if cut else nxt


def plan(
    due_ts: float,
    now_ts: float,
    step: Callable[[float], float | None],
    policy: str,
    grace_s: float,
    max_catchup: int,
) -> MisfirePlan:
    """Decide what runs and what is recorded MISSED for the slots due at ``now_ts``."""
    slots, cut, following = passed_slots(due_ts, now_ts, step)
    result = MisfirePlan(last_slot_ts=slots[-1], next_ts=following, next_known=not cut)
    if len(slots) == 1 and not cut and now_ts - due_ts <= grace_s:
        result.run = slots
        return result
    result.catchup = True
    late_by = now_ts - slots[0]
    if policy == "skip":
        result.run = []
        reason = f"missed: no scheduler ran at the slot (misfire=skip, {late_by:.0f}s late)"
        missed = [(s, reason) for s in slots]
    elif policy == "run_all":
        result.run = slots[-max_catchup:]
        missed = [(s, f"missed: beyond max_catchup={max_catchup}") for s in slots[:-max_catchup]]
    else:
        result.run = slots[-1:]
        reason = "missed: coalesced into one catch-up run (misfire=run_once)"
        missed = [(s, reason) for s in slots[:-1]]
    if len(missed) > MAX_MISSED_RECORDS:
        result.dropped = len(missed) - MAX_MISSED_RECORDS
        missed = missed[-MAX_MISSED_RECORDS:]
    if cut:
        result.dropped += 1
    result.missed = missed
    return result

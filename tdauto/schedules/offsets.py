"""The deterministic offsets added to a nominal slot: ``spread`` and ``jitter``.

Both are derived from a stable hash (SHA-256, never Python's salted ``hash()``), not from a
random source, because the fire time itself identifies the slot: the scheduler builds the
execution id from ``task_id@fire_ts``, so any process that recomputes a fire time, today or
after a restart, must get the very same value.

- ``spread_s``: one offset per task in ``[0, spread_s)``, the same for every slot, so many
  tasks due at 02:00 start at different, stable instants (a task always runs at 02:03:17).
- ``jitter_s``: an offset in ``[0, jitter_s)`` that changes from slot to slot, derived from
  the task and the nominal slot, so a task does not hit the same instant every day.

Offsets are whole milliseconds: exact enough for any schedule, and it keeps each offset
strictly below its bound whatever float rounding does, so ``slot + max_offset_s`` is a true
upper bound of every fire time.
"""

from __future__ import annotations

import hashlib

_MS_PER_S = 1000


def _hash64(*parts: str) -> int:
    """A stable 64-bit integer of ``parts``: identical in every process and Python version."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _offset_s(bound_s: float | None, *parts: str) -> float:
    """An offset in ``[0, bound_s)`` seconds, in whole milliseconds, chosen by ``parts``."""
    if not bound_s:
        return 0.0
    span_ms = int(bound_s * _MS_PER_S)
    if span_ms <= 0:
        return 0.0
    return (_hash64(*parts) % span_ms) / _MS_PER_S


def spread_offset_s(task_id: str, spread_s: float | None) -> float:
    """The task's fixed offset in ``[0, spread_s)`` seconds; 0 without a task id."""
    if not task_id:
        return 0.0
    return _offset_s(spread_s, "spread", task_id)


def jitter_offset_s(task_id: str, slot_ts: float, jitter_s: float | None) -> float:
    """The offset in ``[0, jitter_s)`` seconds of the task's slot at ``slot_ts`` (the nominal
    slot, UTC epoch seconds); 0 without a task id."""
    if not task_id:
        return 0.0
    return _offset_s(jitter_s, "jitter", task_id, repr(float(slot_ts)))


def max_offset_s(task_id: str, spread_s: float | None, jitter_s: float | None) -> float:
    """An upper bound (exclusive) of ``spread + jitter`` for the task, in seconds.

    A slot at or before ``after_ts - max_offset_s`` cannot fire after ``after_ts``, so that is
    where the search for the next fire starts.
    """
    if not task_id:
        return 0.0
    return (spread_s or 0.0) + (jitter_s or 0.0)


def fire_ts(task_id: str, slot_ts: float, spread_s: float | None, jitter_s: float | None) -> float:
    """The fire time (UTC epoch seconds) of the task's nominal slot at ``slot_ts``."""
    return (
        slot_ts + spread_offset_s(task_id, spread_s) + jitter_offset_s(task_id, slot_ts, jitter_s)
    )

"""The rollup journal's entries: one run end's ``RollupDelta`` as one line of JSON.

Both stores queue run ends on a journal instead of rewriting their rollup buckets at each
end (docs/architecture.md, Storage): Redis on a list, pushed by the record's compare-and-set,
the file store on an append-only file. A fold later adds a few hundred entries up and applies
the sums. This module is what both read and write.
"""

from __future__ import annotations

import json
import logging
import math

from tdauto.store.backend import RollupBucket, RollupDelta

log = logging.getLogger(__name__)


def journal_entry(delta: RollupDelta, execution_id: str) -> str:
    """A run end as queued on the journal; the execution id makes every entry unique, which
    the Redis fold's guard relies on."""
    return json.dumps(
        {
            "x": execution_id,
            "b": [[b.id, b.tier, b.end_ts, b.expire_ts] for b in delta.buckets],
            "i": delta.incr,
            "mx": delta.maxima,
            "mn": delta.minima,
            "l": delta.latest,
        },
        separators=(",", ":"),
    )


def delta_of_entry(raw: str | bytes) -> RollupDelta:
    data = json.loads(raw)
    return RollupDelta(
        buckets=[RollupBucket(b[0], b[1], b[2], b[3]) for b in data["b"]],
        incr=data["i"],
        maxima=data["mx"],
        minima=data["mn"],
        latest={f: (float(p[0]), str(p[1])) for f, p in data["l"].items()},
    )


def readable(raw: str | bytes) -> RollupDelta | None:
    """An entry's delta, or None (logged) for one that cannot be counted: not JSON of the
    entry's shape, or a number that is not finite. Such an entry is dropped with the chunk
    it came in, so it cannot block the journal."""
    try:
        delta = delta_of_entry(raw)
        numbers = [*delta.incr.values(), *delta.maxima.values(), *delta.minima.values()]
        if all(math.isfinite(float(v)) for v in numbers):
            return delta
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        pass
    log.warning("dropping a rollup journal entry that cannot be counted: %.200s", raw)
    return None

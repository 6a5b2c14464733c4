"""Fixed-bound histograms: how durations are kept in rollups, and read back as percentiles.

A duration lands in the first bin whose upper bound (seconds) holds it. The bounds are fixed
so bins of any two buckets (minutes, hours, hosts) add up, and Prometheus can export them as
its own cumulative ``_bucket`` series. Percentiles are estimated by linear interpolation
inside the bin the rank falls in, so their error is bounded by the bin width (a p95 of 7 s is
reported somewhere in 5-10 s); ``max`` and ``avg`` are kept exactly beside the bins.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping

BOUNDS_S: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0, 10800.0, 43200.0, 86400.0, math.inf,
)  # fmt: skip


def label(bound: float) -> str:
    """A bin's name: its upper bound as Prometheus writes ``le`` (``"0.5"``, ``"+Inf"``)."""
    return "+Inf" if math.isinf(bound) else f"{bound:g}"


LABELS: tuple[str, ...] = tuple(label(b) for b in BOUNDS_S)
_BY_LABEL = dict(zip(LABELS, BOUNDS_S, strict=True))


def bin_of(value_s: float) -> str:
    """The label of the bin ``value_s`` falls in (negative values count as 0)."""
    return LABELS[bisect.bisect_left(BOUNDS_S, max(0.0, value_s))]


def percentile(counts: Mapping[str, float], q: float, max_s: float | None = None) -> float | None:
    """Estimate the ``q`` quantile (0..1) from ``{bin label: count}``; None when empty.

    The top bin (``+Inf``) is closed at ``max_s`` when known; no estimate exceeds ``max_s``.
    """
    total = sum(counts.get(lb, 0.0) for lb in LABELS)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    lower = 0.0
    for lb in LABELS:
        upper = _BY_LABEL[lb]
        n = counts.get(lb, 0.0)
        if n > 0 and seen + n >= rank:
            top = upper if not math.isinf(upper) else (max_s if max_s is not None else lower)
            estimate = lower + (top - lower) * max(0.0, rank - seen) / n
            return min(estimate, max_s) if max_s is not None else estimate
        seen += n
        lower = upper if not math.isinf(upper) else lower
    return max_s


def summary(
    counts: Mapping[str, float], total_s: float, n: float, max_s: float | None
) -> dict[str, float | None]:
    """``avg``, ``p50``, ``p95``, ``max`` (seconds, 3 decimals) as the stats report them."""
    if n <= 0:
        return {"avg": None, "p50": None, "p95": None, "max": None}

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "avg": r(total_s / n),
        "p50": r(percentile(counts, 0.50, max_s)),
        "p95": r(percentile(counts, 0.95, max_s)),
        "max": r(max_s),
    }

"""Optimization actions: ``analyze`` (what the execution history says), ``tune`` (apply its
safe advice, reversibly) and ``monitor`` (a snapshot of tasks, runs, queues and this host).

Importing this module registers the three. Each lives in its own module; this one keeps
``tdauto.actions.optimization`` the place that names the process type's actions and
re-exports their public names:

- ``tdauto.actions.advice``: ``AnalyzeParams``, the statistics (``summary``,
  ``linear_trend``) and the rules that turn them into recommendations.
- ``tdauto.actions.analysis``: ``analyze`` and ``analyze_history`` (pure: records and time in,
  report out).
- ``tdauto.actions.tuning``: ``tune``, its ``Change``s and the ``ChangeLog`` a ``revert``
  reads.
- ``tdauto.actions.monitor``: ``monitor`` and the queue depths it reads from the broker.
- ``tdauto.actions.balance``: ``balance``, one resource-manager tick now.
"""

from __future__ import annotations

from tdauto.actions.advice import (
    DAY_S,
    POOL_BOUNDS,
    RETRY_BOUNDS,
    RETRY_RECOVERY_MIN,
    RETRY_STEP,
    AnalyzeParams,
    linear_trend,
    percentile,
    pool_sizes,
    summary,
)
from tdauto.actions.analysis import FAILED, FINISHED, S, analyze, analyze_history
from tdauto.actions.balance import balance
from tdauto.actions.monitor import (
    CLASS_QUEUES,
    CONTROL_QUEUE,
    IN_FLIGHT,
    KOMBU_PRIORITY_SEP,
    SECTIONS,
    MonitorParams,
    Section,
    local_queue_depths,
    monitor,
    redis_queue_depths,
)
from tdauto.actions.tuning import CHANGES_FILE, Change, ChangeLog, TuneParams, tune

__all__ = [
    "CHANGES_FILE",
    "CLASS_QUEUES",
    "CONTROL_QUEUE",
    "DAY_S",
    "FAILED",
    "FINISHED",
    "IN_FLIGHT",
    "KOMBU_PRIORITY_SEP",
    "POOL_BOUNDS",
    "RETRY_BOUNDS",
    "RETRY_RECOVERY_MIN",
    "RETRY_STEP",
    "SECTIONS",
    "AnalyzeParams",
    "Change",
    "ChangeLog",
    "MonitorParams",
    "S",
    "Section",
    "TuneParams",
    "analyze",
    "analyze_history",
    "balance",
    "linear_trend",
    "local_queue_depths",
    "monitor",
    "percentile",
    "pool_sizes",
    "redis_queue_depths",
    "summary",
    "tune",
]

"""Static beat entries: tdauto's own system jobs, beside the user's tasks from the store.

The leading beat (``tdauto beat``, ``tdauto up``, ``AutomationSystems.start()``) runs these
through ``tdauto.scheduler:StoreScheduler``, each a short task on ``tdauto.control``. Later
capabilities add theirs here (retention, metrics collection). ``beat_schedule(settings)`` is
what the app uses: the entries with the intervals that come from settings filled in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tdauto.settings import Settings

MANAGER_ENTRY = "tdauto-resource-manager"

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Re-sends tdauto.run for executions left PENDING (a beat that died between claiming a
    # slot and sending it, or a message lost with a local-mode worker), so none stays PENDING.
    "tdauto-requeue-pending": {
        "task": "tdauto.system.requeue_pending",
        "schedule": 30.0,
        "options": {"queue": "tdauto.control", "expires": 25},
    },
    # Dead workers (expired action leases), passed run deadlines and queue timeouts: so no
    # execution stays RUNNING or QUEUED forever.
    "tdauto-reaper": {
        "task": "tdauto.system.reap",
        "schedule": 5.0,
        "options": {"queue": "tdauto.control", "expires": 4},
    },
    # Executions, logs and metrics older than TDAUTO_RETENTION_*_DAYS; logs what it removed.
    "tdauto-retention": {
        "task": "tdauto.system.retention",
        "schedule": 3600.0,
        "options": {"queue": "tdauto.control", "expires": 3000},
    },
    # The resource manager's tick (tdauto.resources.manager): routing weights, lent pools,
    # reservations of dead hosts. Its interval is TDAUTO_MANAGER_INTERVAL_S (see below).
    MANAGER_ENTRY: {
        "task": "tdauto.system.balance",
        "schedule": 3.0,
        "options": {"queue": "tdauto.control", "expires": 2.5},
    },
}


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """``BEAT_SCHEDULE`` with the manager's interval (and its message expiry, so ticks that
    could not be delivered in time do not pile up) taken from ``settings``."""
    schedule = {
        name: {**entry, "options": dict(entry["options"])} for name, entry in BEAT_SCHEDULE.items()
    }
    interval = settings.manager_interval_s
    schedule[MANAGER_ENTRY]["schedule"] = interval
    schedule[MANAGER_ENTRY]["options"]["expires"] = max(interval * 0.9, 0.5)
    return schedule

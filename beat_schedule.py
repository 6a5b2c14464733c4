"""Static beat entries: tdauto's own system jobs, beside the user's tasks from the store.

The leading beat (``tdauto beat``, ``tdauto up``, ``AutomationSystems.start()``) runs these
through ``tdauto.scheduler:StoreScheduler``, each a short task on ``tdauto.control``. Later
capabilities add theirs here (resource-manager tick, retention, metrics collection).
"""

from __future__ import annotations

from typing import Any

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
}

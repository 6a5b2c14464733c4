"""The ``tdauto`` command: run the system (up, worker, beat, flower) and manage it.

Human tables by default (rich), ``--json`` for scripts. Settings come from ``TDAUTO_*``
variables, as in every other tdauto process. One module per command group; each command
calls the facade (``tdauto.api``) or a module below it, never holding an operation itself
(docs/architecture.md). A command's module is imported when the command is asked for (the
table below), so ``tdauto task list`` does not pay for what ``tdauto up`` imports; a module
keeps its heavy imports inside its command bodies, because ``tdauto --help`` imports them all.
"""

from __future__ import annotations

from tdauto.cli.base import main

main.lazy.update(
    {
        **dict.fromkeys(("up", "worker", "beat", "flower", "metrics"), "tdauto.cli.run"),
        "task": "tdauto.cli.tasks",
        **dict.fromkeys(("apply", "export"), "tdauto.cli.apply"),
        "exec": "tdauto.cli.execs",
        **dict.fromkeys(
            ("resources", "config", "actions", "stats", "report", "alerts"), "tdauto.cli.info"
        ),
        "backup": "tdauto.cli.backup:backup",
        "completion": "tdauto.cli.completion",
    }
)

__all__ = ["main"]

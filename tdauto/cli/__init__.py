"""The ``tdauto`` command: run the system (up, worker, beat, flower) and manage it.

Human tables by default (rich), ``--json`` for scripts. Settings come from ``TDAUTO_*``
variables, as in every other tdauto process. One module per command group; each command
calls the facade (``tdauto.api``) or a module below it, never holding an operation itself
(docs/architecture.md).
"""

from __future__ import annotations

from tdauto.cli import apply as apply_commands  # noqa: F401 - apply, export
from tdauto.cli import backup, execs, info, run, tasks  # noqa: F401 - imported for their commands
from tdauto.cli.base import main

main.add_command(backup.backup)

__all__ = ["main"]

"""Helpers for tests of what the ``tdauto`` CLI prints: records stored the way the facade
(or, for input it refuses, the store) stores them, the CLI run through click's CliRunner on
the same data dir, and a check that no character a terminal acts on reaches the output."""

from __future__ import annotations

import asyncio
import threading
import unicodedata
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from tdauto import AutomationSystems, cli
from tdauto.models import ActionRun, Execution, ExecutionStatus, Task

# the categories a terminal may act on or show misleadingly (as tdauto.printable, on purpose
# written out again here so a test does not trust the code under test)
UNSAFE = {"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"}


def unsafe_chars(text: str) -> list[str]:
    """The characters of ``text`` a terminal would act on; line breaks are the output's."""
    return [c for c in text if c != "\n" and unicodedata.category(c) in UNSAFE]


def run_cli(data: Path, *args: str, **env: str | None) -> Result:
    """``tdauto ARGS`` in local mode on ``data``, 1000 columns wide (no wrapped cells)."""
    environ = {"TDAUTO_DATA_DIR": str(data), "TDAUTO_BROKER_URL": None, "COLUMNS": "1000"}
    return CliRunner().invoke(cli.main, list(args), env={**environ, **env})


def definition(name: str, **changes: Any) -> dict[str, Any]:
    """A valid task definition (a daily cleanup) named ``name``."""
    return {
        "name": name,
        "type": "maintenance",
        "schedule": "daily",
        "schedule_config": {"hour": 2, "minute": 0},
        "actions": [{"type": "cleanup", "params": {"older_than": "30days"}}],
        **changes,
    }


def store_task(system: AutomationSystems, name: str, **changes: Any) -> Task:
    """The task as ``create_task`` stores it, or, when the facade refuses the name (control
    characters are refused at create), as a store written by an older tdauto holds it."""
    data = definition(name, **changes)
    try:
        return asyncio.run(system.create_task(**data))
    except ValueError:
        task = Task.model_validate(data, context=system._rt.validation_context())
        stored, _ = system.store.create_task(task, None)
        return stored


def store_execution(
    system: AutomationSystems,
    task: Task,
    *,
    error: str | None = None,
    output: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    log: str = "",
) -> Execution:
    """A FAILED run of ``task`` whose one action ended with ``error`` or ``output``."""
    run = ActionRun(
        index=0,
        type=task.actions[0].type,
        status=ExecutionStatus.FAILED if error else ExecutionStatus.SUCCEEDED,
        params=params or {},
        error=error,
        output=output or {},
    )
    execution = Execution(
        task_id=task.id,
        task_name=task.name,
        status=run.status,
        error=error,
        actions=[run],
    )
    system.store.create_execution(execution)
    if log:
        system.store.append_log(execution.id, log)
    return execution


class Sent:
    """A stand-in for the engine's sender: records what would go to the broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any], str]] = []
        self.lock = threading.Lock()

    def __call__(self, name: str, args: list[Any], queue: str, *_: Any, **__: Any) -> None:
        with self.lock:
            self.sent.append((name, args, queue))

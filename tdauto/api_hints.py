"""The facade's hints when nothing will happen: a task the running workers cannot run, a run
that waits because no worker reads its queue (``tdauto/resources/capabilities.py``). Apart
from ``api.py`` so the facade stays one screen per concern; the CLI prints these, and an
HTTP API can return them."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from tdauto.models import Execution, Task
from tdauto.resources import capabilities

if TYPE_CHECKING:
    from tdauto.engine.runtime import Runtime
    from tdauto.settings import Settings

SAMPLES_WAIT_S = capabilities.FIRST_SAMPLE_S


def _nodes(samples: list[dict[str, Any]]) -> set[str]:
    return {f"{s.get('pool')}@{s.get('host')}" for s in samples}


class WorkerHints:
    """Mixed into ``AutomationSystems``; reads the live workers' samples from the store."""

    settings: Settings
    _rt: Runtime

    if TYPE_CHECKING:

        def _find(self, id_or_name: str) -> Task: ...

    def worker_warnings(
        self, tasks: Iterable[Task | str] | None = None, wait_for: Collection[str] = ()
    ) -> list[str]:
        """One line per step of ``tasks`` (tasks, names or ids; all stored tasks when None)
        that the live workers cannot run: none reads its queue, or their allow-lists or
        plugins refuse it. Empty when no worker is running yet. ``wait_for`` names nodes
        (``pool@host``) just started: their first samples are awaited, a few seconds at
        most, so a pool not yet heard from is not taken for a missing one."""
        samples = self._rt.store.samples()
        deadline = time.monotonic() + SAMPLES_WAIT_S
        while not set(wait_for) <= _nodes(samples) and time.monotonic() < deadline:
            time.sleep(0.1)
            samples = self._rt.store.samples()
        if not samples:
            return []
        chosen = self._rt.store.list_tasks() if tasks is None else tasks
        lines: list[str] = []
        for task in chosen:
            found = task if isinstance(task, Task) else self._find(task)
            lines += capabilities.task_warnings(found, samples, self._rt.registry, self.settings)
        return lines

    def waiting_hint(self, execution: Execution) -> str | None:
        """Why ``execution`` still waits when no worker reads the queue of its next step
        (``no worker is consuming tdauto.storage: …``); None otherwise."""
        return capabilities.waiting_hint(execution, self._rt.store.samples())

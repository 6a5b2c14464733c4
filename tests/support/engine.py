"""Running whole executions through the engine on one thread, without Celery: a sender that
records messages, and a driver that delivers them until the run ends."""

from __future__ import annotations

import threading
import time
from typing import Any

from tdauto.actions.registry import REGISTRY
from tdauto.engine.executions import new_execution
from tdauto.engine.runner import run_action, start_execution
from tdauto.engine.runtime import Runtime
from tdauto.engine.timers import dispatch_retries
from tdauto.models import Execution, Task, Trigger
from tdauto.settings import Settings
from tdauto.store.files import FileStore


class Recorder:
    """A sender that only records what the engine sends: (name, args, queue), and each
    message's priority, shadow name and record id."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any], str]] = []
        self.priorities: list[int] = []
        self.shadows: list[str | None] = []
        self.records: list[str | None] = []
        self.lock = threading.Lock()

    def __call__(
        self,
        name: str,
        args: list[Any],
        queue: str,
        priority: int = 5,
        *,
        shadow: str | None = None,
        record: str | None = None,
    ) -> None:
        with self.lock:
            self.sent.append((name, args, queue))
            self.priorities.append(priority)
            self.shadows.append(shadow)
            self.records.append(record)


def runtime(settings: Settings) -> Runtime:
    """A runtime on a ``FileStore`` in the settings' data dir, sending into a ``Recorder``."""
    return Runtime(settings, FileStore(settings.data_path), REGISTRY, Recorder())


def create(rt: Runtime, data: dict[str, Any]) -> Task:
    """Validate and store a task as ``create_task`` does."""
    task = Task.model_validate(data, context=rt.validation_context())
    rt.store.create_task(task, None)
    return task


def add(rt: Runtime, name: str, actions: list[dict[str, Any]]) -> Task:
    """Create a daily task of ``actions`` in ``rt``'s store."""
    data = {
        "name": name,
        "type": "maintenance",
        "schedule": "daily",
        "schedule_config": {"hour": 2},
        "actions": actions,
    }
    return create(rt, data)


def trigger(rt: Runtime, task: Task) -> Execution:
    """Start a manual run of ``task``, as ``AutomationSystems.trigger`` does."""
    ex = new_execution(task, rt.registry, Trigger.MANUAL)
    rt.store.create_execution(ex)
    start_execution(rt, ex.id)
    return ex


def drive(rt: Runtime, ex: Execution, rounds: int = 20) -> Execution:
    """Deliver every message sent for ``ex`` (retries made due at once) until it ends."""
    sent: list[tuple[str, list[Any], str]] = rt.send.sent  # type: ignore[attr-defined]
    done = 0
    for _ in range(rounds):
        while done < len(sent):
            name, args, _queue = sent[done]
            done += 1
            if name.startswith("tdauto.action.") and args[0] == ex.id:
                run_action(rt, *args)
        got = rt.store.get_execution(ex.id)
        assert got is not None
        if got.status.terminal:
            return got
        dispatch_retries(rt, time.time() + 3600)
    got = rt.store.get_execution(ex.id)
    assert got is not None
    return got


def run_once(rt: Runtime, task: Task, rounds: int = 20) -> Execution:
    """Trigger ``task`` and deliver its messages until the run ends; its final record."""
    ended = drive(rt, trigger(rt, task), rounds)
    assert ended.status.terminal, f"run {ended.id} did not end in {rounds} rounds"
    return ended

"""Running a task through the engine on one thread, as the workers would: a manual trigger,
then every action message delivered in order (retries made due at once) until the run ends."""

from __future__ import annotations

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


class Sent:
    """A sender that keeps what the engine sends instead of publishing it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any], str]] = []

    def __call__(self, name: str, args: list[Any], queue: str, *_: Any, **__: Any) -> None:
        self.sent.append((name, args, queue))


def runtime(settings: Settings) -> Runtime:
    """A runtime on a ``FileStore`` in the settings' data dir, sending into a ``Sent``."""
    return Runtime(settings, FileStore(settings.data_path), REGISTRY, Sent())


def create(rt: Runtime, data: dict[str, Any]) -> Task:
    """Validate and store a task as ``create_task`` does."""
    task = Task.model_validate(data, context=rt.validation_context())
    rt.store.create_task(task, None)
    return task


def run_once(rt: Runtime, task: Task, rounds: int = 20) -> Execution:
    """Trigger ``task`` and deliver its messages until the run ends; its final record."""
    ex = new_execution(task, rt.registry, Trigger.MANUAL)
    rt.store.create_execution(ex)
    start_execution(rt, ex.id)
    sender = rt.send
    assert isinstance(sender, Sent)
    done = 0
    for _ in range(rounds):
        while done < len(sender.sent):
            name, args, _queue = sender.sent[done]
            done += 1
            if name.startswith("tdauto.action.") and args[0] == ex.id:
                run_action(rt, *args)
        got = rt.store.get_execution(ex.id)
        assert got is not None
        if got.status.terminal:
            return got
        dispatch_retries(rt, time.time() + 3600)
    raise AssertionError(f"run {ex.id} did not end in {rounds} rounds")

"""The Celery tasks of the engine: ``tdauto.run`` and one ``tdauto.action.<type>`` per action.

One task per action type (rather than one generic task) so Flower and ``celery inspect`` show
what is running. The tasks close over the process's :class:`Runtime`; no global state. So
none is a Celery shared task (``shared=False``). Celery would otherwise register each task in
every app finalized later in the process as well, where for each name one app's task (in no
fixed order) replaces the others: a second system's worker tasks could run on another
system's runtime and store, and every runtime would stay referenced until the process ends.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from celery import Celery, Task

from tdauto.actions.registry import ActionDef
from tdauto.engine.executions import RECORD_HEADER, RUN_TASK
from tdauto.engine.runner import run_action, start_execution
from tdauto.engine.runtime import Runtime
from tdauto.engine.system import requeue_pending
from tdauto.engine.timers import reap
from tdauto.monitoring.retention import run_retention

LINEAGE: ContextVar[tuple[str, str] | None] = ContextVar("tdauto_lineage", default=None)
"""(root id, parent id) of the action task running in this context, for messages it causes
outside that task: the writer thread of write-behind (``engine.behind``) runs in a copy of the
task's context. Inside the task they are the ids Celery would find itself."""


def _register_action(app: Celery, rt: Runtime, definition: ActionDef) -> None:
    def action_task(self: Task, execution_id: str, index: int) -> str | None:
        request = self.request
        queue = (request.delivery_info or {}).get("routing_key")
        hint = (request.headers or {}).get(RECORD_HEADER)
        hint = hint if isinstance(hint, str) else None
        if rt.behind is not None:
            rt.behind.drain()
        token = LINEAGE.set((request.root_id or request.id, request.id))
        try:
            status = run_action(rt, execution_id, index, queue=queue, hint=hint)
        finally:
            LINEAGE.reset(token)
        return status.value if status is not None else None

    action_task.__name__ = f"action_{definition.name}"
    action_task.__doc__ = definition.description or f"Runs the {definition.name} action."
    app.task(name=definition.task_name, bind=True, ignore_result=True, shared=False)(action_task)


def register_tasks(app: Celery, rt: Runtime) -> None:
    """Register the run task and a task for every action in ``rt.registry``."""

    @app.task(name=RUN_TASK, ignore_result=True, shared=False)
    def run(execution_id: str) -> bool:
        """Start an execution: the first action goes to its resource-class queue."""
        return start_execution(rt, execution_id)

    @app.task(name="tdauto.system.requeue_pending", ignore_result=True, shared=False)
    def requeue(older_than_s: float = 30.0) -> int:
        """Re-send executions left PENDING (a beat died between claim and send)."""
        return requeue_pending(rt, older_than_s)

    @app.task(name="tdauto.system.reap", ignore_result=True, shared=False)
    def reaper() -> dict[str, int]:
        """Expired leases (dead workers), passed deadlines and queue timeouts."""
        return reap(rt)

    @app.task(name="tdauto.system.retention", ignore_result=True, shared=False)
    def retention() -> dict[str, Any]:
        """Remove executions, logs and metrics past their configured ages; report it."""
        return run_retention(rt.store, rt.settings)

    for definition in rt.registry.all():
        _register_action(app, rt, definition)


def sender(app: Celery) -> Any:
    """A ``Runtime.send`` that publishes through ``app`` (JSON, to the given queue).

    Two of Celery's per-message costs are skipped, as they buy nothing here (together they
    were 0.1 of the 0.34 ms of CPU a trigger took, measured in-process on Redis):

    - The queue is not declared before each publish. On both brokers tdauto runs on (Redis,
      and tdauto's local broker in local mode; ``Settings`` accepts no other), a
      message to the default exchange goes straight onto the queue named by its routing
      key, and the workers that read a queue declare it themselves. A kombu declare copies
      and rebinds the queue, even when its cache says it was declared already.
    - ``argsrepr`` (shown by events and Flower) is the plain ``repr`` of the arguments. They
      are an execution id and an index, so Celery's size-limited ``saferepr`` would give the
      same text, only slower.

    A message sent where Celery sees no current task (a success written behind) takes its
    root and parent ids from ``LINEAGE``.
    """

    def send(
        name: str,
        args: list[Any],
        queue: str,
        priority: int = 5,
        *,
        shadow: str | None = None,
        record: str | None = None,
    ) -> None:
        root_id, parent_id = LINEAGE.get() or (None, None)
        # the Redis transport serves priority 0 first; tdauto's 9 is the most urgent
        app.send_task(
            name,
            args=args,
            queue=queue,
            routing_key=queue,
            priority=9 - priority,
            shadow=shadow,
            headers={RECORD_HEADER: record} if record is not None else None,
            argsrepr=repr(args),
            kwargsrepr="{}",
            declare=[],
            root_id=root_id,
            parent_id=parent_id,
        )

    return send

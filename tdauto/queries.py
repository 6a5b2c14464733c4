"""Reads of tasks and executions that need only the store: no Celery app, no actions.

The facade (``tdauto.api``) answers its reads through these functions, and the commands that
only read (``tdauto task list``, ``exec list``, shell completion) open a ``StoreReads``
instead of the facade, so they start without importing Celery and every action
(docs/architecture.md, "Start-up cost").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tdauto.models import Execution, ExecutionStatus, ProcessType, Task
from tdauto.store import ids

if TYPE_CHECKING:
    from tdauto.settings import Settings
    from tdauto.store.backend import Store


def find_task(store: Store, id_or_name: str) -> Task:
    """The task with this id, else this name, else this unique id prefix (4+ characters);
    ``NotFound`` or ``AmbiguousId`` names what was asked for (``tdauto.store.ids``)."""
    return ids.find_task(store, id_or_name)


def list_tasks(
    store: Store, type: ProcessType | str | None = None, enabled: bool | None = None
) -> list[Task]:
    """Tasks sorted by name, of one type and enabled state when given."""
    wanted = ProcessType(type) if type is not None else None
    return [
        t
        for t in store.list_tasks()
        if (wanted is None or t.type is wanted) and (enabled is None or t.enabled is enabled)
    ]


def get_execution(store: Store, execution_id: str) -> Execution:
    """The execution with this id or unique id prefix (``tdauto.store.ids``)."""
    return ids.find_execution(store, execution_id)


def list_executions(
    store: Store,
    task: str | None = None,
    status: ExecutionStatus | str | None = None,
    limit: int = 50,
) -> list[Execution]:
    """Executions newest first, of one task (id or name) and status when given."""
    wanted = ExecutionStatus(status) if status is not None else None
    task_id = find_task(store, task).id if task is not None else None
    return store.list_executions(task_id, wanted, limit)


class StoreReads:
    """The store of ``settings`` opened for reading, with the reads above bound to it.

    In distributed mode Redis is pinged first, so that a Redis that cannot be used is one
    line (``RedisUnavailable``), as for every other command."""

    def __init__(self, settings: Settings | None = None, must_exist: bool = True) -> None:
        from tdauto.datadir import require_store
        from tdauto.settings import Settings
        from tdauto.store import open_store

        self.settings = settings or Settings()
        if must_exist:  # a reader never makes an empty store (exit 3 says where it looked)
            require_store(self.settings)
        if self.settings.broker_url is not None:  # local mode never imports redis-py
            from tdauto.redisconn import check_settings

            check_settings(self.settings)
        self.store = open_store(self.settings)

    def find_task(self, id_or_name: str) -> Task:
        return find_task(self.store, id_or_name)

    def list_tasks(
        self, type: ProcessType | str | None = None, enabled: bool | None = None
    ) -> list[Task]:
        return list_tasks(self.store, type, enabled)

    def get_execution(self, execution_id: str) -> Execution:
        return get_execution(self.store, execution_id)

    def list_executions(
        self,
        task: str | None = None,
        status: ExecutionStatus | str | None = None,
        limit: int = 50,
    ) -> list[Execution]:
        return list_executions(self.store, task, status, limit)

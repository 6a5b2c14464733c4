"""Helpers for calling actions the way the engine calls them, without Celery.

Params go through the registry's model with the validation context (``registry`` and
``settings``), then the handler gets the parsed field values; outputs must be JSON.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tdauto.actions import REGISTRY, ActionContext
from tdauto.settings import Settings
from tdauto.store.files import FileStore


def context(settings: Settings | None) -> dict[str, Any]:
    """The validation context that ``create_task`` gives params models."""
    return {"registry": REGISTRY, "settings": settings}


def make_ctx(
    settings: Settings,
    store: FileStore | None = None,
    execution_id: str = "exec-1",
    index: int = 0,
    *,
    task_id: str = "task-1",
    task_name: str = "test",
    action_type: str = "test",
    logger: str = "tdauto.test",
) -> ActionContext:
    """An ``ActionContext`` for attempt 1; ``store`` defaults to a fresh ``FileStore`` on the
    settings' data path."""
    return ActionContext(
        execution_id=execution_id,
        task_id=task_id,
        task_name=task_name,
        index=index,
        action_type=action_type,
        attempt=1,
        settings=settings,
        store=FileStore(settings.data_path) if store is None else store,
        logger=logging.getLogger(logger),
    )


def call(name: str, ctx: ActionContext, model: Any) -> dict[str, Any]:
    """Call ``name``'s handler with the fields of its parsed params; the output must be JSON."""
    fields = type(model).model_fields
    output = REGISTRY.get(name).handler(ctx, **{n: getattr(model, n) for n in fields})
    json.dumps(output)
    return output


def run(name: str, ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Validate and call ``name`` as the engine does; the output must be JSON."""
    model = REGISTRY.parse_params(name, params, context(ctx.settings))
    return call(name, ctx, model)


@pytest.fixture
def store(settings: Settings) -> FileStore:
    """A ``FileStore`` on the ``settings`` fixture's data path."""
    return FileStore(settings.data_path)

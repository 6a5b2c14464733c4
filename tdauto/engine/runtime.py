"""The per-process runtime the engine works with: settings, store, registry, and a sender.

The engine never reaches for globals; the Celery app (``tdauto.app``) builds one Runtime per
process and closes its tasks over it, and tests build one with a fake sender.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from tdauto.actions.registry import Registry
from tdauto.engine.behind import WriteBehind
from tdauto.settings import Settings
from tdauto.store.backend import Store


class Sender(Protocol):
    """``send(task_name, args, queue, priority, shadow=None, record=None)``: publish one
    Celery task message; ``priority`` is tdauto's (0 to 9, 9 most urgent); ``shadow`` is the
    name the message shows in Flower and worker logs (an action's carries its task's name);
    ``record`` is the execution's JSON as the sender just wrote it, carried in a message
    header so the worker can claim the action without reading it first (a hint only: the
    claim's compare-and-set checks it is still the stored record)."""

    def __call__(
        self,
        name: str,
        args: list[Any],
        queue: str,
        priority: int = 5,
        *,
        shadow: str | None = None,
        record: str | None = None,
    ) -> None: ...


@dataclass
class Runtime:
    settings: Settings
    store: Store
    registry: Registry
    send: Sender
    hold: Callable[[], AbstractContextManager[list[tuple[str, str]]]] | None = None
    """Set when the store can push this broker's messages (``tdauto.engine.outbox``): a
    context in which ``send`` holds its messages back as (Redis list, payload) pairs."""
    behind: WriteBehind | None = None
    """Set in worker processes: an action's success is written behind (``engine.behind``)."""

    def validation_context(self) -> dict[str, Any]:
        """The pydantic context that lets models check action types, params and paths."""
        return {"registry": self.registry, "settings": self.settings}

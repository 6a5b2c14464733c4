"""The watch over a running handler: timeouts reach handlers that ignore them, and an attempt
whose lease cannot be renewed (a hung store) stops before another host may take it over."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tdauto.actions.context import ActionContext
from tdauto.actions.registry import ActionDef
from tdauto.engine.runtime import Runtime
from tdauto.engine.watch import Outcome, run_watched
from tdauto.models import ProcessType, ResourceClass
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.unit.test_dispatch import Recorder


class _NoParams(BaseModel):
    pass


class _HungStore(FileStore):
    """A store whose lease renewals never return (a host whose link to Redis is down)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()

    def timer_set(self, name: str, member: str, due_ts: float, only: Any = "any") -> bool:
        self.release.wait(60)
        return False


def _runtime(tmp_path: Path, store: FileStore | None = None, **settings: Any) -> Runtime:
    s = Settings(data_dir=tmp_path / "data", **settings)
    from tdauto.actions.registry import REGISTRY

    return Runtime(s, store or FileStore(s.data_path), REGISTRY, Recorder())


def _context(rt: Runtime) -> ActionContext:
    return ActionContext(
        execution_id="ex1",
        task_id="t1",
        task_name="watched",
        index=0,
        action_type="busy",
        attempt=1,
        settings=rt.settings,
        store=rt.store,
        logger=logging.getLogger("test.watch"),
    )


FINISHED: list[str] = []


def _busy_loop(ctx: ActionContext, seconds: float = 30.0) -> dict[str, Any]:
    """Pure Python that never looks at ``ctx.cancelled``; notes it if it ran to its end."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    FINISHED.append(ctx.execution_id)
    return {"n": n}


def _define(handler: Any) -> ActionDef:
    return ActionDef(
        name="busy",
        handler=handler,
        params=_NoParams,
        resource_class=ResourceClass.CPU,
        process_type=ProcessType.MAINTENANCE,
        description="",
    )


def test_a_handler_that_ignores_its_timeout_is_interrupted(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, kill_grace_s=0.5)
    FINISHED.clear()

    result = run_watched(rt, _define(_busy_loop), _context(rt), {}, timeout_s=1.0)

    assert result.outcome is Outcome.TIMEOUT
    assert FINISHED == []  # stopped inside its loop, not at the end of its 30 s


def test_an_attempt_whose_lease_cannot_be_renewed_stops_before_the_lease_ends(
    tmp_path: Path,
) -> None:
    store = _HungStore(tmp_path / "data")
    FINISHED.clear()
    rt = _runtime(tmp_path, store, lease_ttl_s=4.0, lease_renew_s=1.0, kill_grace_s=0.5)
    try:
        result = run_watched(rt, _define(_busy_loop), _context(rt), {}, timeout_s=None)
    finally:
        store.release.set()

    assert result.outcome is Outcome.LOST
    assert FINISHED == []


def test_a_quick_handler_returns_its_output(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)

    result = run_watched(rt, _define(lambda ctx: {"ok": True}), _context(rt), {}, None)

    assert result.outcome is Outcome.OK and result.output == {"ok": True}

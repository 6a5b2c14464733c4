"""Runs one action's handler under watch: lease renewal, cancel, timeout.

The handler runs in a thread; this thread watches it. Every ``lease_renew_s`` it renews the
action's lease (a renewal that fails means the reaper gave the action to another worker, so
this attempt stops), every second it looks whether the execution was cancelled or timed out
(anywhere, by anyone), and at the action's timeout it stops the attempt. Stopping means: set
the handler's cancel event (a cooperative signal), SIGTERM then SIGKILL every process group
the handler started, and wait ``kill_grace_s`` for the handler to return. A handler that
ignores all of this is abandoned (its thread cannot be killed) and its result discarded.

A handler that finishes within a moment never sees the watch: the first check comes after
a second, so fast actions pay nothing for it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

from tdauto.actions.context import ActionContext
from tdauto.actions.registry import ActionDef
from tdauto.engine.runtime import Runtime

LEASES = "leases"
POLL_S = 1.0


class Outcome(Enum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"  # the execution ended meanwhile (cancel, deadline, replace)
    LOST = "lost"  # the lease was taken: another worker runs this action now


@dataclass
class Result:
    outcome: Outcome
    output: Any = None
    error: BaseException | None = None


def lease_member(execution_id: str, index: int, attempt: int) -> str:
    return f"{execution_id}:{index}:{attempt}"


def parse_lease(member: str) -> tuple[str, int, int]:
    execution_id, index, attempt = member.rsplit(":", 2)
    return execution_id, int(index), int(attempt)


def run_watched(
    rt: Runtime,
    definition: ActionDef,
    ctx: ActionContext,
    kwargs: dict[str, Any],
    timeout_s: float | None,
) -> Result:
    """Run ``definition.handler(ctx, **kwargs)`` under watch and say how it ended."""
    member = lease_member(ctx.execution_id, ctx.index, ctx.attempt)
    settings = rt.settings
    rt.store.timer_set(LEASES, member, time.time() + settings.lease_ttl_s)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["output"] = definition.handler(ctx, **kwargs)
        except BaseException as exc:  # recorded, not raised: the watch reports it
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"tdauto-action-{member}", daemon=True)
    started = time.monotonic()
    worker.start()
    reason: Outcome | None = None
    last_renew = started
    try:
        while True:
            worker.join(POLL_S)
            if not worker.is_alive():
                break
            for handler in ctx.logger.handlers:
                handler.flush()  # a quiet action's lines still reach the log within a second
            now = time.monotonic()
            if timeout_s is not None and now - started >= timeout_s:
                reason = Outcome.TIMEOUT
            elif now - last_renew >= settings.lease_renew_s:
                renewed = rt.store.timer_set(
                    LEASES, member, time.time() + settings.lease_ttl_s, only="existing"
                )
                last_renew = now
                if not renewed:
                    reason = Outcome.LOST
            if reason is None:
                current = rt.store.get_execution(ctx.execution_id)
                if current is None or current.status.terminal:
                    reason = Outcome.CANCELLED
            if reason is not None:
                ctx.cancel_event.set()
                ctx.processes.stop_all(settings.kill_grace_s)
                worker.join(settings.kill_grace_s)
                break
    finally:
        rt.store.timer_take(LEASES, member)
    if reason is not None:
        return Result(reason, error=box.get("error"))
    if "error" in box:
        return Result(Outcome.ERROR, error=box["error"])
    return Result(Outcome.OK, output=box.get("output"))

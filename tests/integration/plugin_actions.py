"""A plugin module the integration tests load through TDAUTO_PLUGINS."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tdauto import action
from tdauto.actions.context import ActionContext
from tdauto.errors import ActionError


class FailParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = "failed on purpose"


@action("fail", resource_class="cpu", params=FailParams)
def fail(ctx: ActionContext, message: str) -> dict[str, Any]:
    """Always fails with ``message`` (to test failure handling)."""
    ctx.logger.info("about to fail")
    raise ActionError(message, kind="test")


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = 1.0


@action("sleep", resource_class="cpu", params=SleepParams)
def sleep(ctx: ActionContext, seconds: float) -> dict[str, Any]:
    """Sleeps (to make runs that outlast their interval)."""
    import time

    time.sleep(seconds)
    return {"slept": seconds}

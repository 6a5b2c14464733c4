"""A plugin module the integration tests load through TDAUTO_PLUGINS."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tdauto import action
from tdauto.actions.context import ActionContext
from tdauto.actions.programs import ProgramList
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


class FlakyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fail_times: int = 1


@action("flaky", resource_class="cpu", params=FlakyParams)
def flaky(ctx: ActionContext, fail_times: int) -> dict[str, Any]:
    """Fails its first ``fail_times`` attempts, then succeeds."""
    if ctx.attempt <= fail_times:
        raise ActionError(f"attempt {ctx.attempt} fails on purpose", kind="flaky")
    return {"attempt": ctx.attempt}


class EffectParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dir: str
    seconds: float = 0.0


@action("effect", resource_class="cpu", params=EffectParams)
def effect(ctx: ActionContext, dir: str, seconds: float) -> dict[str, Any]:
    """Appends one line to effects.log once per idempotency key, then sleeps."""
    import time
    from pathlib import Path

    root = Path(dir)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f"done-{ctx.idempotency_key.replace(':', '-')}"
    if not marker.exists():
        with (root / "effects.log").open("a") as fh:
            fh.write(f"{ctx.idempotency_key} attempt {ctx.attempt}\n")
        marker.touch()
    (root / f"started-{ctx.attempt}").touch()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.cancelled:
        time.sleep(0.1)
    return {"attempt": ctx.attempt}


class CommandParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    argv: list[str]


# a plugin's own allow-list: fixed here; a real one would read an environment variable
COMMANDS = ProgramList("command", None, "the test command action", fixed=("echo", "sleep"))


@action("command", resource_class="cpu", params=CommandParams)
def command(ctx: ActionContext, argv: list[str]) -> dict[str, Any]:
    """Runs ``argv`` through ctx.run (its own process group, stopped on cancel/timeout)."""
    result = ctx.run(argv, programs=COMMANDS)
    return {"returncode": result.returncode, "output": result.output[-200:]}


class HoldMemoryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mb: int = 0


_HELD: list[bytes] = []


@action("hold_memory", resource_class="memory", params=HoldMemoryParams)
def hold_memory(ctx: ActionContext, mb: int) -> dict[str, Any]:
    """Touches ``mb`` MiB and keeps it after returning (as a leaky action would); returns the
    worker process's pid, so a test can tell whether the memory pool replaced the child."""
    import os

    if mb:
        _HELD.append(b"x" * (mb * 2**20))
    return {"pid": os.getpid()}

"""The action the multi-host tests run, loaded on every host through TDAUTO_PLUGINS."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tdauto import action
from tdauto.actions.context import ActionContext


class JournalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dir: str
    seconds: float = 1.0


def _append(path: Path, line: str) -> None:
    with path.open("a") as fh:  # one short write per line: O_APPEND keeps lines whole
        fh.write(line + "\n")


@action("journal", resource_class="cpu", params=JournalParams)
def journal(ctx: ActionContext, dir: str, seconds: float) -> dict[str, Any]:
    """Records every start and every finished body in ``journal.log`` (``start|done KEY HOST
    ATTEMPT``), does one side effect per idempotency key (a line in ``effects.log``, guarded
    by a marker), then works ``seconds`` unless cancelled. The folder is shared by every
    host (namespaces share the filesystem), like an external system the action talks to."""
    root = Path(dir)
    root.mkdir(parents=True, exist_ok=True)
    host = ctx.settings.host
    key = ctx.idempotency_key
    _append(root / "journal.log", f"start {key} {host} {ctx.attempt}")
    marker = root / f"done-{key.replace(':', '-')}"
    if not marker.exists():
        _append(root / "effects.log", key)
        marker.touch()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx.cancelled:
            _append(root / "journal.log", f"stopped {key} {host} {ctx.attempt}")
            return {"host": host, "stopped": True}
        time.sleep(0.1)
    _append(root / "journal.log", f"done {key} {host} {ctx.attempt}")
    return {"host": host, "attempt": ctx.attempt}

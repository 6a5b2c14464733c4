"""The ``work`` action of ``benchmarks/balancing.py``: holds one worker slot for ``seconds``
(sleeping, so the 2-core machine's other load does not blur what is measured: the question
is where work is sent, not how fast a core is).

Loaded by every process of the benchmark through ``TDAUTO_PLUGINS=benchmarks.balancing_plugin``
with the repository root on ``PYTHONPATH``.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tdauto import action
from tdauto.actions.context import ActionContext


class WorkParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(default=0.2, ge=0, le=60)


@action("work", resource_class="cpu", params=WorkParams)
def work(ctx: ActionContext, seconds: float) -> dict[str, Any]:
    """Occupies its slot for ``seconds``."""
    time.sleep(seconds)
    return {"seconds": seconds}

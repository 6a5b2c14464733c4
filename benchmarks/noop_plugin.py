"""The ``noop`` action of ``benchmarks/throughput.py``: does nothing, so what is measured is
tdauto's own cost per action (orchestration, bookkeeping, broker traffic).

Loaded by every process of the benchmark through ``TDAUTO_PLUGINS=benchmarks.noop_plugin``
with the repository root on ``PYTHONPATH``.
"""

from __future__ import annotations

from typing import Any

from tdauto import action
from tdauto.actions.context import ActionContext


@action("noop", resource_class="cpu")
def noop(ctx: ActionContext) -> dict[str, Any]:
    """Does nothing and returns an empty output (throughput benchmark)."""
    return {}

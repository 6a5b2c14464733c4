"""The ``balance`` action: run the resource manager now, rather than at its next beat tick.

Useful after adding a host or changing pool sizes, or as a step of a task that prepares a
burst of work. It runs one tick in the action's own process (waiting up to ``WAIT_S`` when a
beat tick is running) and returns what the tick decided: the weights per class and host, the
backlog per class and the decisions (lent and returned pools, released reservations, rescued
messages, weight changes). See ``tdauto.resources.manager``.
"""

from __future__ import annotations

from typing import Any

from tdauto.actions.context import ActionContext
from tdauto.actions.registry import action

WAIT_S = 15.0


@action("balance", resource_class="cpu", process_type="optimization")
def balance(ctx: ActionContext) -> dict[str, Any]:
    """Run the resource manager now: routing weights, lent pools, dead hosts' reservations."""
    # the app is built here, on demand: actions sit below the app in the layering
    from tdauto.app import make_app, runtime_of
    from tdauto.resources.broker import CeleryBroker
    from tdauto.resources.manager import tick

    app = make_app(ctx.settings, ctx.store)
    broker = CeleryBroker(app, ctx.settings)
    try:
        report = tick(runtime_of(app), broker, wait_s=WAIT_S)
    finally:
        broker.close()
        app.close()
    ctx.logger.info("balance: %s", {k: v for k, v in report.items() if k != "decisions"})
    return report

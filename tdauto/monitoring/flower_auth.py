"""Flower's ``/metrics`` behind the same basic auth as the rest of Flower.

Flower 2.2 guards its pages and API with ``tornado.web.authenticated`` but serves
``/metrics`` (Prometheus text naming every task type and worker) to anyone. ``tdauto flower``
runs Flower in its own process, so wrapping that one handler there, before Flower starts,
gives it the same check: ``--basic_auth`` credentials, or open only where Flower itself is
(``--no-auth-on-localhost``). tdauto's own ``/metrics`` (``tdauto metrics``) is separate and
has its own credentials (``exposure.py``).
"""

from __future__ import annotations

from typing import Any

import tornado.web

_GUARDED = "_tdauto_guarded"


def protect_metrics() -> None:
    """Make Flower's ``/metrics`` handler ask for Flower's credentials (idempotent)."""
    from flower.views import monitor

    get: Any = monitor.Metrics.get
    if getattr(get, _GUARDED, False):
        return
    guarded: Any = tornado.web.authenticated(get)
    setattr(guarded, _GUARDED, True)
    monitor.Metrics.get = guarded

"""The facade's processes in this one: ``start()`` runs the scheduler (and the worker pools,
supervised as under ``tdauto up``) in the background until ``stop()``. Apart from ``api.py``
so the facade stays one screen per concern."""

from __future__ import annotations

import atexit
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tdauto.private import tighten
from tdauto.processes import embedded_beat
from tdauto.up import BackgroundPools

if TYPE_CHECKING:
    from celery import Celery
    from celery.beat import Service

    from tdauto.settings import Settings


class Running:
    """Mixed into ``AutomationSystems``: its embedded beat and pools."""

    settings: Settings
    app: Celery
    _beat: Service | None
    _pools: BackgroundPools | None

    def start(self, workers: bool = True) -> None:
        """Run the scheduler (and, with ``workers``, one worker per pool) in the background
        until :meth:`stop` or the end of the process. Returns at once.

        The pools are supervised as under ``tdauto up`` (restarted with backoff when they
        exit; a pool in a crash loop is logged and left stopped). When a ``tdauto up`` already
        holds the data dir, its pools run this system's actions, and this system starts its
        own if that one stops (``tdauto.up.BackgroundPools``). A start that fails halfway
        stops what it started."""
        if self._beat is not None:
            return
        tighten(self.settings.data_path)  # what an earlier tdauto left readable: 0600/0700
        try:
            if workers:
                self._pools = BackgroundPools(self.settings)
                self._pools.start()
            self._beat = embedded_beat(self.app)
            self._beat.start()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the embedded beat and the worker pools this object started: the beat is
        asked first and waited for last, since a tick may wait on a lock a pool holds."""
        beat, self._beat = self._beat, None
        if beat is not None:
            beat.service.stop(wait=False)
        if self._pools is not None:
            self._pools.stop()
            self._pools = None
        if beat is not None and beat.is_alive():
            beat.join(timeout=10)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    @contextlib.contextmanager
    def running(self, workers: bool = True) -> Iterator[Running]:
        self.start(workers=workers)
        try:
            yield self
        finally:
            self.stop()

"""Prometheus ``/metrics``: a collector that reads the shared store at scrape time.

One endpoint covers every host: counters and histograms come from the ``all`` rollup
bucket (``tdauto.monitoring.rollups``), gauges from the store's live state (samples every
worker publishes, reservations, in-flight counts) and the broker's queue depths. Nothing is
kept in this process between scrapes, so any number of ``tdauto metrics`` processes agree.
A section that cannot be read (a broker out of reach) is skipped and counted in
``tdauto_collector_errors``; the rest of the scrape still answers. The one exception is
``tdauto_process_restarts_total``, which only ``tdauto up``'s own /metrics serves. Names: see
``docs/process-monitoring.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tdauto.actions.monitor import local_queue_depths, redis_queue_depths
from tdauto.monitoring.exposure import WSGIApp, basic_auth
from tdauto.monitoring.histogram import LABELS
from tdauto.monitoring.rollups import fields
from tdauto.monitoring.stats import IN_FLIGHT
from tdauto.settings import Settings
from tdauto.store.backend import Store

log = logging.getLogger(__name__)

SAMPLE_GAUGES = {
    "cpu_percent": ("tdauto_host_cpu_percent", "Host CPU use, percent."),
    "memory_percent": ("tdauto_host_memory_percent", "Host memory use, percent."),
    "disk_percent": ("tdauto_host_disk_percent", "Use of the data dir's file system, percent."),
    "load_per_core": ("tdauto_host_load_per_core", "1-minute load average per core."),
    "pool_cpu_percent": ("tdauto_pool_cpu_percent", "A pool's process tree CPU, percent."),
    "pool_rss_bytes": ("tdauto_pool_rss_bytes", "A pool's process tree resident memory."),
    "active": ("tdauto_pool_active_actions", "Actions a pool is running now."),
    "concurrency": ("tdauto_pool_concurrency", "A pool's worker slots."),
}


def histogram(
    name: str, doc: str, b: dict[str, float], prefix: str, label: str | None = None
) -> HistogramMetricFamily:
    """A Prometheus histogram from the rollup histogram ``prefix`` (cumulative buckets)."""
    family = HistogramMetricFamily(name, doc, labels=[label] if label else [])
    if label is None:
        groups: dict[str, dict[str, float]] = {
            "": {k[0]: v for k, v in fields(b, prefix, 1).items()}
        }
    else:
        groups = {}
        for (bin_label, key), v in fields(b, prefix, 2).items():
            groups.setdefault(key, {})[bin_label] = v
    for key, counts in sorted(groups.items()):
        running = 0.0
        buckets = []
        for lb in LABELS:
            running += counts.get(lb, 0.0)
            buckets.append((lb, running))
        tail = f"|{key}" if label else ""
        family.add_metric([key] if label else [], buckets, b.get(f"{prefix}_sum{tail}", 0.0))
    return family


class StoreCollector(Collector):
    """Reads rollups and live state from ``store`` on every scrape.

    ``decisions`` is the hook for the resource manager's rebalance decisions: by default the
    counters ``record_rebalance_decision`` keeps in the rollups are exported; a manager with
    richer state can pass its own ``() -> list[Metric]``.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        queue_depths: Callable[[], dict[str, int]] | None = None,
        decisions: Callable[[], list[Metric]] | None = None,
        restarts: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.store = store
        self._restarts = restarts
        self.settings = settings
        self._queue_depths = queue_depths or self._broker_depths
        self._decisions = decisions
        self._broker: Any = None

    def _broker_depths(self) -> dict[str, int]:
        if self.settings.local_mode:
            return local_queue_depths(self.settings)
        if self._broker is None:
            from tdauto.redisconn import Endpoint

            self._broker = Endpoint.of(self.settings).client(
                socket_timeout=5, socket_connect_timeout=5
            )
        depths, _ = redis_queue_depths(self._broker)
        return depths

    def describe(self) -> list[Metric]:
        return []  # families vary with the data; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily(
            "tdauto_collector_errors", "1 when a section could not be read.", labels=["section"]
        )
        for section, produce in (
            ("rollups", self._rollups),
            ("in_flight", self._in_flight),
            ("queues", self._queues),
            ("samples", self._samples),
            ("reservations", self._reservations),
            ("decisions", self._decision_metrics),
            ("processes", self._process_restarts),
        ):
            try:
                yield from produce()
                errors.add_metric([section], 0)
            except Exception:
                log.warning("metrics: could not read %s", section, exc_info=True)
                errors.add_metric([section], 1)
        yield errors

    def _process_restarts(self) -> Iterator[Metric]:
        """Restarts by ``tdauto up``'s supervisor: only its own /metrics has them."""
        if self._restarts is None:
            return
        restarts = CounterMetricFamily(
            "tdauto_process_restarts",
            "Pool processes restarted after an unexpected exit.",
            labels=["pool"],
        )
        for pool, count in sorted(self._restarts().items()):
            restarts.add_metric([pool], count)
        yield restarts

    def _rollups(self) -> Iterator[Metric]:
        [b] = self.store.read_rollups(["all"])
        by_task = fields(b, "tk", 2)
        ex = CounterMetricFamily(
            "tdauto_executions", "Executions that reached a final state.", labels=["task", "status"]
        )
        missed = CounterMetricFamily(
            "tdauto_runs_missed", "Slots recorded MISSED.", labels=["task"]
        )
        skipped = CounterMetricFamily(
            "tdauto_runs_skipped", "Runs SKIPPED by the overlap policy.", labels=["task"]
        )
        for (status, task), v in sorted(by_task.items()):
            ex.add_metric([task, status], v)
            if status == "MISSED":
                missed.add_metric([task], v)
            elif status == "SKIPPED":
                skipped.add_metric([task], v)
        yield from (ex, missed, skipped)
        actions = CounterMetricFamily(
            "tdauto_actions", "Actions that reached a final state.", labels=["action", "status"]
        )
        for (status, name), v in sorted(fields(b, "ac", 2).items()):
            actions.add_metric([name, status], v)
        yield actions
        fires = CounterMetricFamily("tdauto_scheduler_fires", "Slots the beat fired.")
        fires.add_metric([], b.get("fires", 0.0))
        yield fires
        yield histogram("tdauto_scheduler_lag_seconds", "Delay from a slot to its fire.", b, "fl")
        last = GaugeMetricFamily(
            "tdauto_scheduler_last_fire_timestamp_seconds", "When the beat last fired a slot."
        )
        last.add_metric([], b.get("fire_last", 0.0))
        yield last
        yield histogram(
            "tdauto_start_lag_seconds", "Delay from a scheduled slot to its run starting.", b, "sl"
        )
        yield histogram("tdauto_execution_duration_seconds", "Duration of finished runs.", b, "ed")
        yield histogram("tdauto_action_duration_seconds", "Duration of actions.", b, "ad", "action")
        yield histogram(
            "tdauto_queue_wait_seconds", "Time actions waited in queue.", b, "qw", "class"
        )
        busy = CounterMetricFamily(
            "tdauto_pool_busy_seconds", "Seconds actions ran, per resource class.", labels=["class"]
        )
        done = CounterMetricFamily(
            "tdauto_class_actions", "Actions that ran, per resource class.", labels=["class"]
        )
        for (klass,), v in sorted(fields(b, "busy", 1).items()):
            busy.add_metric([klass], v)
        for (klass,), v in sorted(fields(b, "cl", 1).items()):
            done.add_metric([klass], v)
        yield from (busy, done)
        alerts = CounterMetricFamily("tdauto_alerts", "Alerts sent.", labels=["rule"])
        for (rule,), v in sorted(fields(b, "al", 1).items()):
            alerts.add_metric([rule], v)
        yield alerts
        ok = GaugeMetricFamily(
            "tdauto_task_last_success_timestamp_seconds",
            "When each task last succeeded.",
            labels=["task"],
        )
        for name, (ts, _) in sorted(self.store.rollup_latest().items()):
            if name.startswith("task_ok|"):
                ok.add_metric([name.removeprefix("task_ok|")], ts)
        yield ok

    def _in_flight(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "tdauto_executions_in_flight", "Executions not yet ended.", labels=["status"]
        )
        for status, n in sorted(self.store.count_by_status(IN_FLIGHT).items()):
            g.add_metric([status], n)
        yield g

    def _queues(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "tdauto_queue_depth", "Messages waiting in a queue.", labels=["queue"]
        )
        for queue, n in sorted(self._queue_depths().items()):
            g.add_metric([queue], n)
        yield g

    def _samples(self) -> Iterator[Metric]:
        families = {
            key: GaugeMetricFamily(name, doc, labels=["host", "pool"])
            for key, (name, doc) in SAMPLE_GAUGES.items()
        }
        for sample in self.store.samples():
            for key, family in families.items():
                if isinstance(sample.get(key), int | float):
                    family.add_metric([str(sample["host"]), str(sample["pool"])], sample[key])
        yield from families.values()

    def _reservations(self) -> Iterator[Metric]:
        held = self.store.reservations()
        percent = GaugeMetricFamily(
            "tdauto_reserved_percent",
            "Percent of a host's capacity reserved by running actions.",
            labels=["host", "resource"],
        )
        count = GaugeMetricFamily(
            "tdauto_reservations", "Reservations held, per host.", labels=["host"]
        )
        totals: dict[str, dict[str, float]] = {}
        counts: dict[str, int] = {}
        for r in held.values():
            host = str(r["host"])
            counts[host] = counts.get(host, 0) + 1
            row = totals.setdefault(host, {"cpu": 0.0, "memory": 0.0, "storage": 0.0})
            for name in row:
                row[name] += float(r.get(name, 0.0))
        for host, row in sorted(totals.items()):
            count.add_metric([host], counts[host])
            for name, v in row.items():
                percent.add_metric([host, name], v)
        yield from (percent, count)

    def _decision_metrics(self) -> Iterator[Metric]:
        if self._decisions is not None:
            yield from self._decisions()
            return
        [b] = self.store.read_rollups(["all"])
        made = CounterMetricFamily(
            "tdauto_rebalance_decisions",
            "Routing decisions of the resource manager.",
            labels=["class", "action"],
        )
        for (klass, what), v in sorted(fields(b, "rb", 2).items()):
            made.add_metric([klass, what], v)
        last = GaugeMetricFamily(
            "tdauto_rebalance_last_decision_timestamp_seconds", "When the manager last decided."
        )
        last.add_metric([], b.get("rb_last", 0.0))
        yield from (made, last)


def metrics_app(
    store: Store, settings: Settings, auth: tuple[str, str] | None, **collector: Any
) -> WSGIApp:
    """The ``/metrics`` WSGI app (text exposition format) behind basic auth when ``auth``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, settings, **collector))
    app: WSGIApp = make_wsgi_app(registry)
    return basic_auth(app, *auth) if auth else app

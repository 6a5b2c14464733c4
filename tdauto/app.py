"""The Celery app and its configuration, in one place.

``make_app(settings)`` builds a configured app with the engine's tasks registered; nothing is
created on import. Local mode (no ``TDAUTO_BROKER_URL``) uses tdauto's embedded broker
(``tdauto.localbroker``: SQLite under ``<data_dir>/broker``); distributed mode uses Redis.
Either way messages are JSON only, acks are late (an action whose worker dies is redelivered,
not lost), and task events are on for Flower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery

from beat_schedule import beat_schedule
from tdauto.actions.registry import REGISTRY, load_plugins
from tdauto.engine import outbox
from tdauto.engine.executions import CONTROL_QUEUE
from tdauto.engine.runtime import Runtime
from tdauto.engine.tasks import register_tasks, sender
from tdauto.redisconn import Endpoint
from tdauto.resources import manager
from tdauto.resources.broker import CeleryBroker
from tdauto.resources.router import Router, routed_sender
from tdauto.settings import Settings
from tdauto.store import Store, open_store

SETTINGS_KEY = "tdauto_settings"
RUNTIME_KEY = "tdauto_runtime"


LOCAL_TRANSPORT = "tdauto.localbroker:Transport"


def broker_folder(settings: Settings) -> Path:
    """Where the local broker keeps its database and wake-up sockets (local mode)."""
    return settings.data_path / "broker"


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings tdauto runs with."""
    conf: dict[str, Any] = {
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # no "task-sent" event: it doubles the cost of every publish (the beat sends ten
        # thousand runs a minute at scale); Flower still sees received/started/succeeded
        "task_send_sent_event": False,
        "worker_send_task_events": True,
        "task_default_queue": CONTROL_QUEUE,
        "task_create_missing_queues": True,
        "timezone": "UTC",
        "enable_utc": True,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "beat_max_loop_interval": settings.beat_tick_s,
        SETTINGS_KEY: settings,
    }
    if settings.local_mode:
        # the same queues, bindings and priorities as Redis mode (docs/architecture.md,
        # "The local broker"); consumers are woken by a socket, polling_interval is a fallback
        conf["broker_url"] = "tdauto-local://"
        conf["broker_transport"] = LOCAL_TRANSPORT
        conf["broker_transport_options"] = {
            "folder": str(broker_folder(settings)),
            "polling_interval": settings.poll_interval_s,
            # messages an earlier tdauto left in kombu's filesystem:// folder move over
            "legacy_queue_folder": str(broker_folder(settings) / "queue"),
        }
    else:
        conf["broker_url"] = Endpoint.of(settings).kombu_url()
        transport = outbox.transport_for(settings.broker_url)  # kombu's, pushes holdable
        if transport is not None:
            conf["broker_transport"] = transport
        conf["broker_transport_options"] = {
            # sentinel://: the master's name and the sentinels' password (no result backend:
            # results are ignored, so nothing else needs them)
            **Endpoint.of(settings).kombu_options(),
            "visibility_timeout": settings.visibility_timeout_s,
            # ten priority lists per queue (the engine sends 9 - task priority, since Redis
            # serves step 0 first) and queues read in the order a worker lists them:
            # orchestration first, then work passed to this host, then the shared queue
            "priority_steps": list(range(10)),
            "queue_order_strategy": "priority",
        }
    return conf


def make_app(settings: Settings | None = None, store: Store | None = None) -> Celery:
    """A Celery app for ``settings`` with every action (built-ins and plugins) registered."""
    settings = settings or Settings()
    load_plugins(settings.plugins)
    app = Celery("tdauto", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.conf.beat_schedule = beat_schedule(settings)
    store = store or open_store(settings)
    router = Router(store, class_of=_default_class)
    # actions sent without a queue go by the weights too (the engine names one: see below)
    app.conf.task_routes = (router,)
    runtime = Runtime(
        settings=settings,
        store=store,
        registry=REGISTRY,
        send=routed_sender(sender(app), router),
        hold=outbox.held if _holds(settings, store) else None,
    )
    app.conf[RUNTIME_KEY] = runtime
    register_tasks(app, runtime)
    _register_manager(app, runtime)
    return app


def _holds(settings: Settings, store: Store) -> bool:
    """Whether a trigger's first message can be pushed with its record (``engine.outbox``):
    the broker uses the outbox transport and the store is on that same Redis."""
    url = settings.broker_url
    return not settings.local_mode and outbox.applies(url) and store.pushes_messages(url)


def _default_class(action_type: str) -> str | None:
    """The default resource class of an action type, for actions sent without a queue."""
    if action_type not in REGISTRY:
        return None
    return REGISTRY.get(action_type).resource_class.value


def _register_manager(app: Celery, runtime: Runtime) -> None:
    """``tdauto.system.balance``: one resource-manager tick (beat runs it every few seconds)."""
    broker = CeleryBroker(app, runtime.settings)

    @app.task(name=manager.BALANCE_TASK, ignore_result=True, shared=False)
    def balance() -> dict[str, Any]:
        """Routing weights, lent pools and dead hosts' reservations (the resource manager)."""
        return manager.tick(runtime, broker)


def runtime_of(app: Celery) -> Runtime:
    """The runtime (settings, store, registry, sender) ``make_app`` built for ``app``."""
    runtime = app.conf.get(RUNTIME_KEY)
    if not isinstance(runtime, Runtime):
        raise TypeError("this Celery app was not made by tdauto.app.make_app")
    return runtime


def settings_of(app: Celery) -> Settings:
    """The tdauto settings an app was made with."""
    value = app.conf.get(SETTINGS_KEY)
    return value if isinstance(value, Settings) else Settings()

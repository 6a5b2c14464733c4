"""Persistence: the ``Store`` protocol and its two backends, chosen by the settings.

``open_store`` is the one place that picks a backend: the file store under the data dir in
local mode (no ``TDAUTO_BROKER_URL``), Redis in distributed mode. Nothing connects at import,
and each backend's module is imported when first used (PEP 562), so local mode never imports
redis-py (docs/architecture.md, "Start-up cost").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tdauto.settings import Settings
from tdauto.store.backend import SNAPSHOT_FORMAT, Store

if TYPE_CHECKING:
    from tdauto.store.files import FileStore
    from tdauto.store.redis import RedisStore

__all__ = ["SNAPSHOT_FORMAT", "FileStore", "RedisStore", "Store", "open_store"]

_BACKENDS = {"FileStore": "tdauto.store.files", "RedisStore": "tdauto.store.redis"}


def __getattr__(name: str) -> Any:
    home = _BACKENDS.get(name)
    if home is None:
        raise AttributeError(f"module 'tdauto.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def open_store(settings: Settings) -> Store:
    """The store for ``settings``: ``FileStore`` in local mode, ``RedisStore`` otherwise."""
    if settings.broker_url is None:
        from tdauto.store.files import FileStore

        return FileStore(settings.data_path, settings.log_max_bytes)
    from tdauto.store.redis import RedisStore

    return RedisStore(
        settings.broker_url,
        settings.key_prefix,
        settings.log_max_bytes,
        reconnect_s=settings.store_reconnect_s,
        sentinel_master=settings.sentinel_master,
        sentinel_password=(
            settings.sentinel_password.get_secret_value() if settings.sentinel_password else None
        ),
    )

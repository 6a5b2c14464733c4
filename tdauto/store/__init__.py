"""Persistence: the ``Store`` protocol and its two backends, chosen by the settings.

``open_store`` is the one place that picks a backend: the file store under the data dir in
local mode (no ``TDAUTO_BROKER_URL``), Redis in distributed mode. Nothing connects at import.
"""

from __future__ import annotations

from tdauto.settings import Settings
from tdauto.store.backend import SNAPSHOT_FORMAT, Store
from tdauto.store.files import FileStore
from tdauto.store.redis import RedisStore

__all__ = ["SNAPSHOT_FORMAT", "FileStore", "RedisStore", "Store", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store for ``settings``: ``FileStore`` in local mode, ``RedisStore`` otherwise."""
    if settings.broker_url is None:
        return FileStore(settings.data_path, settings.log_max_bytes)
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

"""``monitor`` against a real Redis broker: the queue depths it reads are kombu's lists.

Moved out of ``tests/unit/test_optimization.py`` (unit tests use no services). The handler is
called the way the engine calls it: params through the registry's model, then keyword
arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from tdauto.actions import load_plugins
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.support.actions import make_ctx, run

pytestmark = pytest.mark.integration

load_plugins([])


def run_monitor(settings: Settings, store: FileStore, params: dict[str, Any]) -> dict[str, Any]:
    """Validate ``params`` and call ``monitor`` as the engine does; the output must be JSON."""
    ctx = make_ctx(
        settings,
        store,
        task_id="optimizer",
        task_name="optimizer",
        action_type="monitor",
        logger="tdauto.test.monitor",
    )
    return run("monitor", ctx, params)


def test_monitor_counts_redis_queues(redis_url: str, tmp_path: Path) -> None:
    # Given kombu's lists on the broker: a priority list, a non-list key and one unacked message
    client = redis.Redis.from_url(redis_url)
    client.rpush("tdauto.cpu", "a", "b", "c")
    client.rpush("tdauto.cpu\x06\x166", "d")
    client.rpush("tdauto.control", "e")
    client.set("tdauto.not-a-queue", "x")
    client.hset("unacked", "tag1", "m")
    settings = Settings(data_dir=tmp_path / "data", allowed_paths=[tmp_path], broker_url=redis_url)

    # When monitor takes a snapshot of the queues
    out = run_monitor(settings, FileStore(settings.data_path), {"include": ["queues"]})

    # Then each queue's lists are summed and the unacked message is counted
    assert out["queues"]["mode"] == "redis" and out["queues"]["unacked"] == 1
    assert out["queues"]["depth"] == {
        "tdauto.control": 1,
        "tdauto.cpu": 4,
        "tdauto.memory": 0,
        "tdauto.storage": 0,
    }
    client.close()

"""Redis Sentinel, live: tdauto's workers, store and triggers on ``sentinel://`` URLs with a
master, a replica and three sentinels on this machine (tests/support/redis_sentinel.py).

The master is SIGKILLed while runs are under way; the sentinels promote the replica, and every
run, those already sent and those triggered after, finishes, once, with nothing lost. No beat
runs: the reaper and ``requeue_pending`` would repair a lost message after the fact, so a
green run here means nothing needed repair.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tdauto import AutomationSystems
from tdauto.app import runtime_of
from tdauto.models import ExecutionStatus, ProcessType, ScheduleType
from tests.support.redis_sentinel import MASTER, SENTINEL_PASSWORD, SentinelCluster

S = ExecutionStatus
STEPS = 3


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SentinelCluster]:
    # every tdauto process of this test (the workers inherit the environment) asks the
    # sentinels, with their password, for this master
    monkeypatch.setenv("TDAUTO_SENTINEL_MASTER", MASTER)
    monkeypatch.setenv("TDAUTO_SENTINEL_PASSWORD", SENTINEL_PASSWORD)
    found = SentinelCluster(tmp_path / "ha")
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
def redis_url(cluster: SentinelCluster) -> str:
    """``TDAUTO_BROKER_URL`` for the conftest's ``system`` and ``workers``: the sentinels."""
    return cluster.url


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        time.sleep(0.2)


def test_runs_finish_after_the_master_is_killed_and_nothing_is_lost(
    cluster: SentinelCluster, system: AutomationSystems, workers: list[object]
) -> None:
    task = asyncio.run(
        system.create_task(
            name="through-failover",
            type=ProcessType.MAINTENANCE,
            schedule=ScheduleType.DAILY,
            schedule_config={"hour": 2},
            actions=[{"type": "sleep", "params": {"seconds": 0.3}}] * STEPS,
            overlap="allow",
        )
    )
    # a run's messages go with its record (the outbox), on the sentinels' master too
    assert runtime_of(system.app).hold is not None
    before = [system.trigger_sync(task.id).id for _ in range(12)]

    def ended() -> list[str]:
        runs = system.store.list_executions(task_id=task.id, limit=1000)
        return [r.id for r in runs if r.status in (S.SUCCEEDED, S.FAILED, S.CANCELLED)]

    # Given runs under way on the master (some done, most queued or running)
    wait_for(lambda: len(ended()) >= 2, 60, "the first runs to finish")
    under_way = len(before) - len(ended())
    # When the master is SIGKILLed and the sentinels promote its replica
    cluster.kill_master()
    cluster.wait_failover()
    # Then triggers go on (the store follows the sentinels to the new master)
    after = [system.trigger_sync(task.id).id for _ in range(6)]

    # and every run finishes, each of its actions run to success once, none lost
    wait_for(lambda: len(ended()) == len(before) + len(after), 120, "every run to end")
    runs = system.store.list_executions(task_id=task.id, limit=1000)
    assert sorted(r.id for r in runs) == sorted(before + after)
    assert {r.status for r in runs} == {S.SUCCEEDED}, [(r.id, r.status, r.error) for r in runs]
    for run in runs:
        assert [a.status for a in run.actions] == [S.SUCCEEDED] * STEPS
    assert cluster.master_port() == cluster.replica.port
    assert under_way > 0  # the kill came while runs were still queued or running

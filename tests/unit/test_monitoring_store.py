"""The store's monitoring methods, one suite over both backends (files and real Redis)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tdauto.store.redis as redis_store_module
from tdauto.models import Execution, ExecutionStatus
from tdauto.monitoring.rollups import buckets_at, execution_delta, record_final, window_ids
from tdauto.monitoring.scan import scan_execution_stats
from tdauto.monitoring.stats import execution_stats
from tdauto.store import Store
from tdauto.store.backend import RollupDelta
from tdauto.store.effects import Effects
from tdauto.store.redis import RedisStore
from tests.support.history import write_history
from tests.support.redis_server import RedisServer
from tests.unit.test_store import (  # noqa: F401
    BASE,
    make_execution,
    make_task,
    store,
    store_factory,
)

S = ExecutionStatus
T = 1_718_000_000.0


def test_rollup_adds_keeps_max_and_min_in_every_bucket(store: Store) -> None:  # noqa: F811
    for value in (3.0, 7.0, 5.0):
        store.add_rollup(
            RollupDelta(
                buckets_at(T),
                incr={"n": 1, "sum": value},
                maxima={"top": value},
                minima={"low": value},
                latest={"task|a": (T + value, f"v{value:g}")},
            )
        )

    ids = [b.id for b in buckets_at(T)]
    for bucket in store.read_rollups(ids):
        assert bucket == {"n": 3.0, "sum": 15.0, "top": 7.0, "low": 3.0}
    assert store.read_rollups(["h:0"]) == [{}]
    assert store.rollup_latest() == {"task|a": (T + 7.0, "v7")}


def test_purge_rollups_removes_buckets_that_ended_before_the_cutoff(store: Store) -> None:  # noqa: F811
    for ts in (T, T + 3600, T + 7200):
        store.add_rollup(RollupDelta(buckets_at(ts), incr={"n": 1}))
    hour_ids = [b.id for ts in (T, T + 3600, T + 7200) for b in buckets_at(ts) if b.tier == "h"]

    removed = store.purge_rollups({"h": (T // 3600) * 3600 + 7200})

    assert removed == 2
    assert [bool(b) for b in store.read_rollups(hour_ids)] == [False, False, True]
    assert store.read_rollups(["all"]) == [{"n": 3.0}]


def test_cooldown_is_won_once_until_it_expires(store: Store) -> None:  # noqa: F811
    assert store.acquire_cooldown("disk-full@host1", 60)
    assert not store.acquire_cooldown("disk-full@host1", 60)
    assert store.acquire_cooldown("disk-full@host2", 60)
    assert store.acquire_cooldown("short", 0.001)
    time.sleep(0.05)
    assert store.acquire_cooldown("short", 60)


def test_history_keeps_newest_first_and_purges_by_age(store: Store) -> None:  # noqa: F811
    for i in range(30):
        store.append_history("alerts", {"ts": T + i, "i": i}, keep=10)

    newest = store.history("alerts", limit=3)
    assert [r["i"] for r in newest] == [29, 28, 27]
    kept = store.history("alerts", limit=None)
    assert 10 <= len(kept) <= 30 and kept[0]["i"] == 29

    removed = store.purge_history("alerts", T + 25)

    assert [r["i"] for r in store.history("alerts", None)] == [29, 28, 27, 26, 25]
    assert removed == len(kept) - 5


def test_purge_executions_removes_old_finished_runs_with_their_logs_only(store: Store) -> None:  # noqa: F811
    task = make_task()
    old_done = make_execution(task, 0, status=S.SUCCEEDED)
    old_running = make_execution(task, 1, status=S.RUNNING)
    old_pending = make_execution(task, 2)  # its record leaves the default status out
    new_done = make_execution(task, 100, status=S.FAILED)
    for ex in (old_done, old_running, old_pending, new_done):
        store.create_execution(ex)
        store.append_log(ex.id, "hello\n")
    cutoff = (old_running.created_at + timedelta(seconds=10)).timestamp()

    removed = store.purge_executions(cutoff)

    assert removed == [old_done.id]
    assert store.get_execution(old_done.id) is None and store.read_log(old_done.id) == ""
    assert store.get_execution(old_running.id) is not None
    kept = {old_running.id, old_pending.id, new_done.id}
    assert {e.id for e in store.list_executions(limit=None)} == kept
    assert store.list_executions(status=S.SUCCEEDED) == []
    assert [e.id for e in store.list_executions(status=S.PENDING)] == [old_pending.id]
    counts = store.count_by_status([S.RUNNING, S.PENDING, S.FAILED])
    assert counts == {"RUNNING": 1, "PENDING": 1, "FAILED": 1}


def test_window_ids_cover_the_window_with_few_buckets() -> None:
    now = T
    since = now - 3 * 86400 - 5 * 3600 - 17 * 60
    ids = window_ids(since, now)

    assert len(ids) <= 60 + 24 + 4 + 24 + 60
    tiers = {i.split(":")[0] for i in ids}
    assert tiers <= {"m", "h", "d"}
    assert window_ids(None, now) == ["all"]


def test_rollup_stats_agree_with_a_scan_of_every_record(store: Store) -> None:  # noqa: F811
    made = write_history(store, 400)
    now = max(e.finished_at for e in made if e.finished_at).timestamp() + 1

    fast = execution_stats(store, now_ts=now)
    slow = scan_execution_stats(store)

    for key in ("total", "by_status", "success_rate"):
        assert fast[key] == slow[key], key
    assert fast["duration_seconds"]["max"] == slow["duration_seconds"]["max"]
    assert fast["duration_seconds"]["avg"] == pytest.approx(slow["duration_seconds"]["avg"], 1e-3)
    # percentiles are histogram estimates: inside the bin the true value is in
    assert fast["duration_seconds"]["p95"] == pytest.approx(slow["duration_seconds"]["p95"], 0.5)
    assert {n: r["total"] for n, r in fast["by_task"].items()} == {
        n: r["total"] for n, r in slow["by_task"].items()
    }
    assert {n: r["by_status"] for n, r in fast["by_action"].items()} == {
        n: r["by_status"] for n, r in slow["by_action"].items()
    }
    assert fast["scheduler"]["missed"] == slow["by_status"].get("MISSED", 0)
    eff = fast["efficiency"]
    assert eff["throughput_per_minute"]["storage"] > 0
    assert 0 < eff["pool_utilization"]["storage"] < 1
    assert eff["queue_wait_seconds"]["cpu"]["max"] <= 2.0


def test_since_counts_only_runs_that_ended_in_the_window(store: Store) -> None:  # noqa: F811
    made = write_history(store, 300)
    cut = made[200].created_at
    now = max(e.finished_at for e in made if e.finished_at).timestamp() + 1

    stats = execution_stats(store, since=cut, now_ts=now)

    # the window starts at the minute holding `cut`: runs that ended from then on
    start = datetime.fromtimestamp(cut.timestamp() // 60 * 60, UTC)
    expected = [e for e in made if e.finished_at and e.finished_at >= start]
    assert stats["total"] == len(expected)


def test_record_final_ignores_runs_still_going_and_never_raises(store: Store) -> None:  # noqa: F811
    task = make_task()
    running = make_execution(task, 0, status=S.RUNNING)
    record_final(store, running)
    assert store.read_rollups(["all"]) == [{}]

    class Broken:  # a store whose writes fail
        def add_rollup(self, delta: RollupDelta) -> None:
            raise OSError("disk full")

    done = make_execution(task, 1, status=S.SUCCEEDED)
    record_final(Broken(), done)  # type: ignore[arg-type]


def test_actions_are_sent_under_a_name_carrying_the_task_name(tmp_path: Path) -> None:
    from tdauto.actions.registry import REGISTRY, load_plugins
    from tdauto.engine.executions import new_execution
    from tdauto.engine.runner import start_execution
    from tdauto.engine.runtime import Runtime
    from tdauto.models import Task, Trigger
    from tdauto.settings import Settings
    from tdauto.store.files import FileStore
    from tests.unit.test_dispatch import Recorder

    load_plugins([])
    settings = Settings(data_dir=tmp_path / "data")
    rt = Runtime(settings, FileStore(settings.data_path), REGISTRY, Recorder())
    task = Task.model_validate(
        {
            "name": "Daily Backup",
            "type": "maintenance",
            "schedule": "daily",
            "schedule_config": {"hour": 2},
            "actions": [{"type": "cleanup", "params": {"older_than": "30days"}}],
        },
        context=rt.validation_context(),
    )
    rt.store.create_task(task, None)
    ex = new_execution(task, rt.registry, Trigger.MANUAL)
    rt.store.create_execution(ex)

    start_execution(rt, ex.id)

    sent = rt.send.sent[-1]  # type: ignore[attr-defined]
    assert sent[0] == "tdauto.action.cleanup" and sent[1] == [ex.id, 0]
    assert rt.send.shadows[-1] == "tdauto.action[Daily Backup/cleanup]"  # type: ignore[attr-defined]


def test_beat_fires_and_missed_slots_reach_the_rollups(tmp_path: Path) -> None:
    from tdauto.actions.registry import REGISTRY, load_plugins
    from tdauto.engine.runtime import Runtime
    from tdauto.scheduler import dispatch_due
    from tdauto.settings import Settings
    from tdauto.store.files import FileStore
    from tests.unit.test_dispatch import Recorder, add_daily, ts

    load_plugins([])
    settings = Settings(data_dir=tmp_path / "data")
    rt = Runtime(settings, FileStore(settings.data_path), REGISTRY, Recorder())
    add_daily(rt, "2026-11-20T10:00:00")
    # Given a beat that was down for three slots (misfire run_once: one run, two MISSED)
    assert dispatch_due(rt, ts("2026-11-23T02:00:30")) == 1

    stats = execution_stats(rt.store, settings=settings, now_ts=ts("2026-11-23T02:01:00"))

    assert stats["scheduler"]["fires"] == 1
    assert stats["scheduler"]["lag_seconds"]["max"] == 30.0
    assert stats["scheduler"]["missed"] == 2
    assert stats["by_task"]["nightly"]["by_status"] == {"MISSED": 2}


# --- run ends through the record's write (the rollup journal in Redis) ------------------------


def _end_runs(target: Store, count: int) -> list[Execution]:
    """``count`` runs ended the way the engine ends them: the rollup rides on the update."""
    task = make_task()
    ended = []
    for n in range(count):
        ex = make_execution(task, n, status=S.RUNNING, started_at=BASE + timedelta(seconds=n))
        target.create_execution(ex)

        def end(e: Execution) -> Effects:
            e.status = S.SUCCEEDED if e.created_at.second % 4 else S.FAILED
            e.finished_at = e.created_at + timedelta(seconds=2)
            return Effects(rollup=execution_delta(e))

        ended.append(target.update_execution(ex.id, end))
    return ended


def test_run_ends_written_with_their_record_are_in_the_statistics(store: Store) -> None:  # noqa: F811
    ended = _end_runs(store, 450)  # over FOLD_AT: the writers fold on their way, readers the rest

    stats = execution_stats(store, now_ts=BASE.timestamp() + 3600)

    failed = sum(e.status is S.FAILED for e in ended)
    assert stats["total"] == 450
    assert stats["by_status"] == {"SUCCEEDED": 450 - failed, "FAILED": failed}
    assert stats["duration_seconds"]["max"] == 2.0
    assert store.rollup_latest()["task|t1"][1] == ended[-1].status.value


def test_concurrent_folds_count_every_run_end_once(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 1,300 run ends left on the journal (no writer folded them)
    monkeypatch.setattr(redis_store_module, "FOLD_AT", 10**9)
    stores = [RedisStore(redis_server.url, prefix="fold") for _ in range(4)]
    _end_runs(stores[0], 1300)
    assert stores[0]._r.llen(stores[0].keys.rollup_journal) == 1300

    # When four processes' readers fold at once
    threads = [threading.Thread(target=s.fold_rollups) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then every end is counted once, and the journal is empty
    [total] = stores[1].read_rollups(["all"])
    assert total["n"] == 1300
    assert stores[2]._r.llen(stores[2].keys.rollup_journal) == 0


def test_a_resent_run_end_is_not_counted_twice(redis_server: RedisServer) -> None:
    rs = RedisStore(redis_server.url, prefix="resend")
    sent: list[tuple[list[str], list[Any]]] = []
    real = rs._cas_execution

    def record_call(keys: list[str], args: list[Any]) -> Any:
        sent.append((keys, args))
        return real(keys=keys, args=args)

    rs._cas_execution = record_call  # type: ignore[assignment]
    _end_runs(rs, 1)

    # the client sends the same script call again (its first reply was lost)
    keys, args = sent[-1]
    assert real(keys=keys, args=args)[0] == "conflict"
    assert rs.read_rollups(["all"])[0]["n"] == 1


def test_an_entry_that_cannot_be_counted_never_blocks_the_journal_or_a_run_end(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    rs = RedisStore(redis_server.url, prefix="bad")
    rs._r.rpush(rs.keys.rollup_journal, "not json", '{"x": "e", "i": {"n": NaN}}')
    _end_runs(rs, 3)

    # a read folds past them: the three run ends are counted, the journal is empty
    assert rs.read_rollups(["all"])[0]["n"] == 3
    assert rs._r.llen(rs.keys.rollup_journal) == 0

    # and a fold that fails after a run end is written leaves the end written
    def broken() -> int:
        raise RuntimeError("fold bug")

    monkeypatch.setattr(redis_store_module, "FOLD_AT", 1)
    monkeypatch.setattr(rs, "fold_rollups", broken)
    (ended,) = _end_runs(rs, 1)
    assert rs.get_execution(ended.id).status is ended.status  # type: ignore[union-attr]

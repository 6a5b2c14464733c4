"""The optimization actions: ``analyze``, ``tune`` and ``monitor``, on a seeded file store.

Executions are written straight into a ``FileStore`` as ``Execution``/``ActionRun`` records,
so the history is exactly what each test says it is; handlers are called the way the engine
calls them (params through the registry's model, then keyword arguments). No services: the
Redis queue depths are read here from a fake client; ``monitor`` against a real Redis is in
``tests/integration/test_monitor_redis.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from tdauto.actions import ActionContext, load_plugins
from tdauto.actions.advice import AnalyzeParams, linear_trend
from tdauto.actions.analysis import analyze_history
from tdauto.actions.monitor import redis_queue_depths
from tdauto.actions.tuning import CHANGES_FILE
from tdauto.errors import ActionError
from tdauto.models import ActionRun, Execution, ExecutionStatus, RetryPolicy, Task
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.support import actions
from tests.support.actions import context, run

S = ExecutionStatus
REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)
POOLS = {
    "TDAUTO_CONCURRENCY_CPU": 2,
    "TDAUTO_CONCURRENCY_MEMORY": 1,
    "TDAUTO_CONCURRENCY_STORAGE": 4,
}

load_plugins([])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", allowed_paths=[tmp_path])


store = actions.store  # the fixture: a FileStore on the settings fixture's data path


def make_ctx(settings: Settings, store: FileStore, execution_id: str = "exec-1") -> ActionContext:
    return actions.make_ctx(
        settings,
        store,
        execution_id,
        task_id="optimizer",
        task_name="optimizer",
        logger="tdauto.test.optimization",
    )


def add_task(store: FileStore, settings: Settings, name: str, **options: Any) -> Task:
    data = {
        "name": name,
        "type": "maintenance",
        "schedule": "daily",
        "schedule_config": {"hour": 2},
        "actions": [{"type": "cleanup", "params": {"older_than": "30days"}}],
        **options,
    }
    task = Task.model_validate(data, context=context(settings))
    store.create_task(task, None)
    return task


def execution(
    task: Task,
    status: ExecutionStatus,
    created: datetime,
    duration_s: float = 10.0,
    attempts: int = 1,
    wait_s: float = 0.0,
    retry_max: int | None = None,
    error: str | None = None,
) -> Execution:
    """A finished run of ``task`` with one main action that took ``duration_s``."""
    started = created + timedelta(seconds=wait_s)
    finished = started + timedelta(seconds=duration_s)
    policy = RetryPolicy(max=task.retry.max if retry_max is None else retry_max)
    run = ActionRun(
        index=0,
        type=task.actions[0].type,
        status=status,
        attempts=attempts,
        resource_class="storage",
        queue="tdauto.storage",
        retry=policy,
        sent_at=created,
        started_at=started,
        finished_at=finished,
        error=error,
    )
    return Execution(
        task_id=task.id,
        task_name=task.name,
        status=status,
        created_at=created,
        started_at=started,
        finished_at=finished,
        error=error,
        actions=[run],
    )


def seed(store: FileStore, settings: Settings, now: datetime = NOW) -> dict[str, Task]:
    """Three tasks over five days, plus one run outside a 7-day window.

    - ``flaky`` (retry.max 2): 10 runs, 4 fail after all retries, 2 succeed on a retry.
    - ``slow`` (deadline 100 s): 10 runs getting 10 s/day slower, from 50 s to 95 s.
    - ``broken`` (no retries): 10 runs, 7 failed.
    """
    flaky = add_task(store, settings, "flaky", retry={"max": 2})
    slow = add_task(store, settings, "slow", deadline=100)
    broken = add_task(store, settings, "broken")
    for i in range(10):
        at = now - timedelta(days=5) + timedelta(hours=12 * i)
        if i < 4:
            store.create_execution(execution(flaky, S.FAILED, at, 20, attempts=3, error="boom"))
        elif i < 6:
            store.create_execution(execution(flaky, S.SUCCEEDED, at, 20, attempts=2))
        else:
            store.create_execution(execution(flaky, S.SUCCEEDED, at, 20))
        store.create_execution(execution(slow, S.SUCCEEDED, at, 50 + 5 * i))
        status = S.FAILED if i % 10 < 7 else S.SUCCEEDED
        store.create_execution(execution(broken, status, at, 5, error="disk full"))
    store.create_execution(execution(broken, S.SUCCEEDED, now - timedelta(days=10), 500))
    return {"flaky": flaky, "slow": slow, "broken": broken}


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in report["tasks"]}


def recs(report: dict[str, Any], kind: str, task: Task | None = None) -> list[dict[str, Any]]:
    return [
        r
        for r in report["recommendations"]
        if r["kind"] == kind and (task is None or r["change"]["task_id"] == task.id)
    ]


# --- analyze ----------------------------------------------------------------------------------


def test_linear_trend_is_least_squares() -> None:
    points = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (3.0, 7.0)]
    assert linear_trend(points) == {
        "slope_s_per_day": 2.0,
        "intercept_s": 1.0,
        "r2": 1.0,
        "points": 4,
    }
    noisy = linear_trend([(0.0, 1.0), (1.0, 2.0), (2.0, 1.0), (3.0, 2.0)])
    assert noisy is not None and noisy["slope_s_per_day"] == pytest.approx(0.2)
    assert noisy["r2"] == pytest.approx(0.2)
    assert linear_trend([(0.0, 1.0), (1.0, 2.0)]) is None  # too few points
    assert linear_trend([(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]) is None  # no spread in time
    flat = linear_trend([(0.0, 4.0), (1.0, 4.0), (2.0, 4.0)])
    assert flat is not None and flat["slope_s_per_day"] == 0 and flat["r2"] is None


def test_analyze_reports_rates_slowest_trends_and_advice(settings, store) -> None:
    tasks = seed(store, settings)
    report = analyze_history(
        store.list_executions(limit=None), store.list_tasks(), AnalyzeParams(), NOW, POOLS
    )
    rows = by_name(report)

    assert report["executions"] == 30  # the run of 10 days ago is outside the window
    assert rows["flaky"]["failure_rate"] == 0.4
    assert rows["flaky"]["retries"] == {"recovered": 2, "exhausted": 4}
    assert rows["broken"]["failure_rate"] == 0.7
    assert rows["broken"]["last_error"] == "disk full"
    assert rows["slow"]["failure_rate"] == 0.0
    assert rows["slow"]["duration_s"]["p50"] == 70 and rows["slow"]["duration_s"]["p95"] == 95
    trend = rows["slow"]["trend"]
    assert trend["slope_s_per_day"] == pytest.approx(10.0) and trend["r2"] == pytest.approx(1.0)
    assert rows["flaky"]["trend"]["slope_s_per_day"] == 0 and rows["flaky"]["trend"]["r2"] is None

    assert [t["name"] for t in report["slowest_tasks"]] == ["slow", "flaky", "broken"]
    assert report["slowest_actions"][0]["type"] == "cleanup"
    assert report["slowest_actions"][0]["runs"] == 30

    (retries,) = recs(report, "retries", tasks["flaky"])
    assert retries["safe"] is True
    assert retries["change"] == {
        "task_id": tasks["flaky"].id,
        "field": "retry.max",
        "from": 2,
        "to": 4,
    }
    assert "33% of its retried failures" in retries["message"]

    (near,) = recs(report, "timeout", tasks["slow"])
    assert near["safe"] is False and "near its deadline" in near["message"]
    assert near["change"]["field"] == "deadline" and near["change"]["from"] == 100

    (failing,) = recs(report, "failing", tasks["broken"])
    assert failing["safe"] is False and "fails 70%" in failing["message"]
    assert failing["change"] == {
        "task_id": tasks["broken"].id,
        "field": "enabled",
        "from": True,
        "to": False,
    }
    # broken has no retries: raising them is advised but not safe (it runs the action twice)
    (no_retries,) = recs(report, "retries", tasks["broken"])
    assert no_retries["safe"] is False and no_retries["change"]["from"] == 0
    assert not recs(report, "pool")  # nothing waited in a queue


def test_analyze_advises_a_pool_size_when_actions_wait(settings, store) -> None:
    task = add_task(store, settings, "queued")
    for i in range(6):
        at = NOW - timedelta(hours=i + 1)
        store.create_execution(execution(task, S.SUCCEEDED, at, 5, wait_s=90))
    report = analyze_history(
        store.list_executions(limit=None), store.list_tasks(), AnalyzeParams(), NOW, POOLS
    )
    assert report["queue_wait_s"]["storage"]["p95"] == 90
    (pool,) = recs(report, "pool")
    assert pool["safe"] is True
    assert pool["change"] == {
        "task_id": None,
        "field": "TDAUTO_CONCURRENCY_STORAGE",
        "from": 4,
        "to": 5,
    }


def test_analyze_needs_min_runs_and_honours_the_window_and_task_filter(settings, store) -> None:
    tasks = seed(store, settings)
    few = analyze_history(
        store.list_executions(limit=None),
        store.list_tasks(),
        AnalyzeParams(min_runs=50),
        NOW,
        POOLS,
    )
    assert few["recommendations"] == [] and len(few["tasks"]) == 3
    one = analyze_history(
        store.list_executions(limit=None),
        store.list_tasks(),
        AnalyzeParams(task="broken", since="30days"),
        NOW,
        POOLS,
    )
    assert [r["name"] for r in one["tasks"]] == ["broken"] and one["executions"] == 11
    assert {r["change"]["task_id"] for r in one["recommendations"]} == {tasks["broken"].id}


def test_retries_already_raised_are_not_raised_again(settings, store) -> None:
    """Failures that used 2 retries say nothing about 4: no advice once retries were raised."""
    tasks = seed(store, settings)
    raised = tasks["flaky"].model_copy(update={"retry": RetryPolicy(max=4)})
    store.save_task(raised)
    report = analyze_history(
        store.list_executions(limit=None), store.list_tasks(), AnalyzeParams(), NOW, POOLS
    )
    assert recs(report, "retries", tasks["flaky"]) == []


def test_analyze_action_logs_and_returns_json(settings, store, caplog) -> None:
    now = datetime.now(UTC)
    tasks = seed(store, settings, now=now)
    with caplog.at_level(logging.INFO, logger="tdauto.test.optimization"):
        out = run("analyze", make_ctx(settings, store), {"since": "7days"})
    assert out["executions"] == 30
    assert by_name(out)["flaky"]["failure_rate"] == 0.4
    assert recs(out, "retries", tasks["flaky"])[0]["safe"] is True
    assert "analyzed 30 executions of 3 tasks" in caplog.text
    assert "recommendation (safe): raise retries of task 'flaky'" in caplog.text


# --- tune -------------------------------------------------------------------------------------


def changes_log(settings: Settings) -> list[dict[str, Any]]:
    path = settings.data_path / "reports" / CHANGES_FILE
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tune_applies_a_retry_change_and_reverts_it(settings, store) -> None:
    tasks = seed(store, settings)
    before = store.get_task(tasks["flaky"].id)
    assert before is not None

    out = run(
        "tune",
        make_ctx(settings, store, "exec-apply"),
        {"changes": [{"task_id": "flaky", "field": "retry.max", "from": 2, "to": 4}]},
    )
    (change,) = out["changes"]
    assert out["applied"] == 1 and change["status"] == "applied"
    assert (change["from"], change["to"], change["task_name"]) == (2, 4, "flaky")
    after = store.get_task(tasks["flaky"].id)
    assert after is not None and after.retry.max == 4
    assert after.retry.backoff == before.retry.backoff  # nothing else changed
    assert after.actions == before.actions and after.name == before.name
    assert [r["id"] for r in changes_log(settings)] == [change["id"]]

    undone = run("tune", make_ctx(settings, store, "exec-revert"), {"revert": change["id"]})
    (record,) = undone["changes"]
    assert record["reverts"] == change["id"] and (record["from"], record["to"]) == (4, 2)
    restored = store.get_task(tasks["flaky"].id)
    assert restored is not None and restored.retry == before.retry
    assert [r["kind"] for r in changes_log(settings)] == ["apply", "revert"]

    with pytest.raises(ActionError, match="already reverted"):
        run("tune", make_ctx(settings, store, "exec-again"), {"revert": change["id"]})


def test_tune_applies_only_safe_advice_and_records_pool_advice(settings, store) -> None:
    now = datetime.now(UTC)
    tasks = seed(store, settings, now=now)
    queued = add_task(store, settings, "queued")
    for i in range(6):
        store.create_execution(
            execution(queued, S.SUCCEEDED, now - timedelta(hours=i + 1), 5, wait_s=90)
        )
    ctx = make_ctx(settings, store, "exec-tune")

    out = run("tune", ctx, {})

    assert out["mode"] == "analysis" and out["applied"] == 1
    statuses = {(c["field"], c["status"]) for c in out["changes"]}
    assert statuses == {("retry.max", "applied"), ("TDAUTO_CONCURRENCY_STORAGE", "recommended")}
    pool = next(c for c in out["changes"] if c["status"] == "recommended")
    assert "cannot resize a worker pool it does not own" in pool["note"]
    assert "TDAUTO_CONCURRENCY_STORAGE=5" in pool["note"]
    flaky = store.get_task(tasks["flaky"].id)
    broken = store.get_task(tasks["broken"].id)
    assert flaky is not None and flaky.retry.max == 4
    assert broken is not None and broken.retry.max == 0 and broken.enabled  # not safe: untouched
    assert {r["kind"] for r in out["needs_review"]} >= {"failing", "timeout", "retries"}
    assert len(changes_log(settings)) == 2

    again = run("tune", ctx, {})  # the same action delivered twice: nothing applied twice
    assert again["changes"] and all(c.get("reused") for c in again["changes"])
    flaky = store.get_task(tasks["flaky"].id)
    assert flaky is not None and flaky.retry.max == 4
    assert len(changes_log(settings)) == 2


def test_tune_dry_run_changes_nothing(settings, store) -> None:
    tasks = seed(store, settings)
    out = run(
        "tune",
        make_ctx(settings, store),
        {
            "changes": [{"task_id": tasks["flaky"].id, "field": "retry.max", "to": 5}],
            "dry_run": True,
        },
    )
    assert out["changes"][0]["status"] == "dry_run" and out["applied"] == 0
    flaky = store.get_task(tasks["flaky"].id)
    assert flaky is not None and flaky.retry.max == 2
    assert not (settings.data_path / "reports" / CHANGES_FILE).exists()


def test_tune_of_an_action_policy_reverts_to_inheriting(settings, store) -> None:
    task = add_task(store, settings, "two", retry={"max": 1, "backoff": "5s"})
    out = run(
        "tune",
        make_ctx(settings, store, "exec-a"),
        {"changes": [{"task_id": "two", "field": "actions.0.retry.max", "to": 3}]},
    )
    changed = store.get_task(task.id)
    assert changed is not None and changed.actions[0].retry is not None
    assert changed.actions[0].retry.max == 3 and changed.actions[0].retry.backoff == 5
    assert changed.retry.max == 1
    run("tune", make_ctx(settings, store, "exec-b"), {"revert": out["changes"][0]["id"]})
    back = store.get_task(task.id)
    assert back is not None and back.actions[0].retry is None


def test_tune_refuses_stale_or_conflicting_changes(settings, store) -> None:
    tasks = seed(store, settings)
    with pytest.raises(ActionError, match=r"retry\.max is 2, not 3"):
        run(
            "tune",
            make_ctx(settings, store),
            {"changes": [{"task_id": "flaky", "field": "retry.max", "from": 3, "to": 4}]},
        )
    with pytest.raises(ActionError, match="task 'nope' not found"):
        run(
            "tune",
            make_ctx(settings, store),
            {"changes": [{"task_id": "nope", "field": "retry.max", "to": 4}]},
        )
    out = run(
        "tune",
        make_ctx(settings, store, "exec-1"),
        {"changes": [{"task_id": "flaky", "field": "retry.max", "to": 4}]},
    )
    edited = store.get_task(tasks["flaky"].id)
    assert edited is not None
    store.save_task(edited.model_copy(update={"retry": RetryPolicy(max=7)}))
    with pytest.raises(ActionError, match="changed since"):
        run("tune", make_ctx(settings, store, "exec-2"), {"revert": out["changes"][0]["id"]})
    with pytest.raises(ActionError, match="no applied change"):
        run("tune", make_ctx(settings, store, "exec-3"), {"revert": "abcdef123456"})


# --- monitor ----------------------------------------------------------------------------------


def test_monitor_snapshot_in_local_mode(settings, store) -> None:
    from tdauto.app import make_app

    active = add_task(store, settings, "active")
    paused = add_task(store, settings, "paused", enabled=False)
    for status in (S.RUNNING, S.QUEUED, S.QUEUED, S.SUCCEEDED):
        store.create_execution(Execution(task_id=active.id, task_name=active.name, status=status))
    store.create_execution(Execution(task_id=paused.id, task_name=paused.name, status=S.FAILED))
    app = make_app(settings, store)  # sends real messages through the filesystem broker
    app.send_task("tdauto.action.noop", args=[], queue="tdauto.cpu")
    app.send_task("tdauto.action.noop", args=[], queue="tdauto.cpu")
    app.send_task("tdauto.run", args=[], queue="tdauto.control")
    app.send_task("tdauto.action.noop", args=[], queue=f"tdauto.storage.{settings.host}")

    out = run("monitor", make_ctx(settings, store), {})

    assert out["tasks"] == {
        "total": 2,
        "enabled": 1,
        "paused": 1,
        "running": 1,
        "by_type": {"maintenance": 2},
    }
    executions = out["executions"]
    assert executions["in_flight"] == 3
    assert executions["by_status"]["QUEUED"] == 2 and executions["by_status"]["RUNNING"] == 1
    assert len(executions["oldest"]) == 3
    queues = out["queues"]
    assert queues["mode"] == "local"
    assert queues["depth"]["tdauto.cpu"] == 2 and queues["depth"]["tdauto.control"] == 1
    assert queues["depth"]["tdauto.memory"] == 0
    assert queues["depth"][f"tdauto.storage.{settings.host}"] == 1
    assert out["pools"]["storage"] == {"concurrency": 4, "queued": 1}
    assert out["pools"]["cpu"] == {"concurrency": 2, "queued": 2}
    host = out["host"]
    assert host["name"] == settings.host and host["cpu_count"] >= 1
    assert 0 <= host["memory"]["used_percent"] <= 100 and len(host["load_avg"]) == 3
    assert host["disk"]["path"] == str(settings.data_path) and host["disk"]["total_bytes"] > 0
    assert "errors" not in out


def test_monitor_sections_and_unreachable_broker(settings, store, tmp_path) -> None:
    out = run("monitor", make_ctx(settings, store), {"include": ["tasks"]})
    assert set(out) == {"at", "host_name", "tasks"}
    remote = Settings(
        data_dir=settings.data_dir, allowed_paths=[tmp_path], broker_url="redis://127.0.0.1:1/0"
    )
    out = run("monitor", make_ctx(remote, store), {"include": ["queues"]})
    assert "queues" not in out and "ConnectionError" in out["errors"]["queues"]


class FakeRedis:
    """Enough of redis-py for ``redis_queue_depths`` (scan, pipelined LLEN and HLEN)."""

    def __init__(self, lists: dict[str, int], unacked: int) -> None:
        self.lists = lists
        self.unacked = unacked
        self.calls: list[tuple[str, str]] = []

    def scan_iter(self, match: str, count: int, _type: str) -> list[bytes]:
        assert (match, _type) == ("tdauto.*", "list")
        return [k.encode() for k in self.lists]

    def pipeline(self, transaction: bool) -> FakeRedis:
        return self

    def llen(self, key: str) -> None:
        self.calls.append(("llen", key))

    def hlen(self, key: str) -> None:
        self.calls.append(("hlen", key))

    def execute(self) -> list[int]:
        return [self.lists[k] if op == "llen" else self.unacked for op, k in self.calls]


def test_redis_queue_depths_sum_kombu_priority_lists() -> None:
    fake = FakeRedis({"tdauto.cpu": 3, "tdauto.cpu\x06\x163": 2, "tdauto.memory.h1": 1}, 4)
    depths, unacked = redis_queue_depths(fake)
    assert depths == {
        "tdauto.control": 0,
        "tdauto.cpu": 5,
        "tdauto.memory": 0,
        "tdauto.storage": 0,
        "tdauto.memory.h1": 1,
    }
    assert unacked == 4


# --- params and templates ---------------------------------------------------------------------


def task_with(action_type: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "t",
        "type": "optimization",
        "schedule": "daily",
        "schedule_config": {"hour": 1},
        "actions": [{"type": action_type, "params": params}],
    }


@pytest.mark.parametrize(
    ("action_type", "params", "message"),
    [
        ("analyze", {"since": "soon"}, "invalid duration 'soon'"),
        ("analyze", {"since": 0}, "duration must be positive"),
        ("analyze", {"top": 0}, "greater than or equal to 1"),
        ("analyze", {"failure_alert": 2}, "less than or equal to 1"),
        ("analyze", {"window": "7d"}, "Extra inputs are not permitted"),
        ("tune", {"changes": [{"task_id": "t", "field": "retry.max", "to": 11}]}, "within 0..10"),
        ("tune", {"changes": [{"task_id": "t", "field": "retry.max", "to": -1}]}, "within 0..10"),
        ("tune", {"changes": [{"task_id": "t", "field": "deadline", "to": 9}]}, "cannot be tuned"),
        ("tune", {"changes": [{"field": "retry.max", "to": 3}]}, "needs the task_id"),
        (
            "tune",
            {"changes": [{"task_id": "t", "field": "TDAUTO_CONCURRENCY_CPU", "to": 3}]},
            "give no task_id",
        ),
        ("tune", {"changes": [{"field": "TDAUTO_CONCURRENCY_GPU", "to": 3}]}, "no such pool"),
        ("tune", {"changes": [{"field": "TDAUTO_CONCURRENCY_CPU", "to": 0}]}, "within 1..64"),
        (
            "tune",
            {"revert": "abc123", "changes": [{"task_id": "t", "field": "retry.max", "to": 1}]},
            "either",
        ),
        ("tune", {"revert": "abcdef", "changes": None, "dry": True}, "Extra inputs"),
        ("tune", {"revert": "; rm -rf /"}, "should match pattern"),
        ("tune", {"analysis": {"since": "x"}}, "invalid duration"),
        ("monitor", {"include": ["gpus"]}, "Input should be 'tasks'"),
        ("monitor", {"include": []}, "at least 1 item"),
        ("monitor", {"disk_path": "/etc"}, "outside the allowed paths"),
        ("monitor", {"in_flight_limit": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_params_fail_at_task_validation(settings, action_type, params, message) -> None:
    with pytest.raises(ValidationError, match=message):
        Task.model_validate(task_with(action_type, params), context=context(settings))


def test_optimization_template_is_valid_and_creates(tmp_path) -> None:
    from tdauto.api import AutomationSystems

    items = yaml.safe_load((REPO / "examples" / "optimization.yaml").read_text())
    settings = Settings(data_dir=tmp_path / "data")
    tasks = [Task.model_validate(item, context=context(settings)) for item in items]
    assert [t.actions[0].type for t in tasks] == ["analyze", "tune", "monitor"]
    system = AutomationSystems(data_dir=tmp_path / "data")
    created = [asyncio.run(system.create_task(**item)) for item in items]
    assert [t.name for t in created] == ["weekly-analysis", "nightly-tuning", "snapshot"]
    assert all(t.next_run_at is not None for t in created)


def test_cli_lists_the_optimization_actions(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from tdauto.cli import main

    monkeypatch.setenv("TDAUTO_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(main, ["actions", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    for name in ("analyze", "tune", "monitor"):
        assert rows[name]["process_type"] == "optimization"
        assert rows[name]["resource_class"] == "cpu"
    assert "since" in rows["analyze"]["params"]["properties"]
    assert "revert" in rows["tune"]["params"]["properties"]
